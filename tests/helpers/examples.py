"""Running the examples and client configs as processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


BIN = Path(sys.executable).parent  # the venv's bin: `agentbus` is there


BOUND = 90.0  # seconds any one example process may take; each finishes in a few


def wait_until(condition: Callable[[], bool], what: str, bound: float = BOUND) -> None:
    """Poll (bounded) until `condition()` holds."""
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {bound} s waiting for {what}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process the tests started: SIGTERM, then SIGKILL if it has not exited within 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
