"""Running `agentbus` commands as processes: a clean environment, bounded, refusals checked."""

from __future__ import annotations

import os
import subprocess
import sys

MODULE = [sys.executable, "-m", "mcp_agentbus"]


TIMEOUT = 30  # every command here ends in a few seconds; a hang fails instead of blocking the suite


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run a command with a clean AGENTBUS_* environment plus `env`, stdin closed, bounded."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}
    return subprocess.run(
        args,
        env={**base, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def assert_refused(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exited non-zero, said why on stderr (one clean message, no traceback), and kept stdout empty."""
    assert proc.returncode != 0, proc
    err = proc.stderr
    assert err.strip(), proc
    assert "Traceback" not in err, err
    assert proc.stdout == "", proc.stdout  # stdout is the protocol channel
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err
