"""The README's commands run as written.

Its shell blocks marked ```` ```bash tested ```` run here, in README order, each as one bash script with
`set -e`, in a fresh HOME (so the local bus, the tokens file and Claude Code's config are this test's
own) with the venv's `bin` first on PATH: what the README's install step gives (`agentbus` on PATH)
and, for the examples, its activated venv (`python` has the package). The install commands themselves
(`pip install`, `pipx install`) need the network and are not run.

Blocks marked `tested-claude` also run `claude` (Claude Code 2.x): `claude mcp add` and `claude mcp
list`, which connects to the server without an account. They run where `claude` is installed; CI
(`.ci/run`) installs it from npm, and under `CI=true` a missing `claude` fails the test instead of
skipping it.

Two things a reader does without thinking are added: after a command put in the background (`&`) the
test notes its pid (to stop it at the end) and, for the HTTP server, waits until its port answers
before the next line, as a reader would see it start; and the README's port 8765 becomes a free one.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers.examples import BIN, ROOT

README = ROOT / "README.md"
BLOCK = re.compile(r"^```bash (tested(?:-claude)?)\n(.*?)^```$", re.M | re.S)
BOUND = 120  # seconds one block may take; the examples block, the longest, takes about 25


def blocks() -> list[tuple[str, str]]:
    return [(kind, body) for kind, body in BLOCK.findall(README.read_text())]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_a_reader_types_it(script: str, port: str, pids: Path) -> str:
    lines = []
    for line in script.splitlines():
        lines.append(line)
        if re.search(r"&\s*(#.*)?$", line):
            lines.append(f"echo $! >> {pids}")
            if "serve --transport http" in line:
                up = f"(: >/dev/tcp/127.0.0.1/{port}) 2>/dev/null"
                lines.append(f"for _ in $(seq 100); do {up} && break; sleep 0.1; done")
    return "\n".join(lines)


def run_block(script: str, kind: str, project: Path, env: dict[str, str]) -> str:
    """Run one block with `set -e`; its output (to a file, so that what it leaves in the background
    cannot hold the test up)."""
    out = project.parent / "block.out"
    with out.open("w") as sink:
        done = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=project if kind == "tested-claude" else ROOT,  # the examples run from the checkout
            env=env, stdout=sink, stderr=subprocess.STDOUT, timeout=BOUND, check=False,
        )  # fmt: skip
    text = out.read_text()
    assert done.returncode == 0, (script, text)
    assert "Traceback" not in text, (script, text)
    return text


def test_the_readme_marks_the_blocks_that_run() -> None:
    kinds = [kind for kind, _ in blocks()]
    assert kinds.count("tested") >= 3 and kinds.count("tested-claude") >= 2, kinds


def test_every_marked_readme_block_runs_as_written(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="ab-") as state:
        run_the_readme(tmp_path, Path(state))


def run_the_readme(tmp_path: Path, state: Path) -> None:
    claude = shutil.which("claude")
    if claude is None and os.environ.get("CI") == "true":
        pytest.fail("CI must install Claude Code (npm install -g @anthropic-ai/claude-code): see .ci/run")
    home = tmp_path / "home"
    project = tmp_path / "project"  # Claude Code keeps per-project config; the README's "your project"
    project.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTBUS_", "XDG_"))}
    env |= {
        "HOME": str(home),
        "XDG_STATE_HOME": str(state),  # the local bus's socket path must stay short (unix sockets)
        "PATH": os.pathsep.join([str(BIN), *([str(Path(claude).parent)] if claude else []), env["PATH"]]),
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "AGENTBUS_RETRY_BACKOFF_SECONDS": "0.2",  # the examples' retried task, sooner
    }
    port = str(free_port())  # the README's fixed 8765 might be taken on a shared machine
    servers: list[str] = []
    pids = tmp_path / "background.pids"
    try:
        for kind, body in blocks():
            if kind == "tested-claude" and claude is None:
                continue  # not CI (checked above), and nowhere to run it
            out = run_block(as_a_reader_types_it(body.replace("8765", port), port, pids), kind, project, env)
            if "claude mcp list" in body:
                listed = re.findall(r"^agentbus[\w-]*: .+ - .+$", out, re.M)  # `name: command - status`
                assert listed and all("✔ Connected" in line for line in listed), out
                servers += listed
            if "examples/coordinator.py" in body:
                assert "workflow done: 6/6 done" in out, out
                assert "worker-3: no task for 10 s, stopping" in out, out
    finally:
        for pid in pids.read_text().split() if pids.exists() else []:
            subprocess.run(
                ["kill", pid], capture_output=True, check=False
            )  # what the README put in the background
        subprocess.run([str(BIN / "agentbus"), "local", "stop"], env=env, capture_output=True, check=False)
    if claude is None:  # outside CI only (checked above); said, not silent
        pytest.skip("every README block ran but the Claude Code ones: `claude` is not installed here")
    assert {line.split(":")[0] for line in servers} == {"agentbus", "agentbus-http"}, servers
