"""Private redis-server processes for the fixtures and the tests that need their own."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def redis_binary(name: str) -> str | None:
    """Path of a Redis binary; None when missing locally, a failure under CI."""
    binary = shutil.which(name)
    if binary is None and IN_CI:
        pytest.fail(f"{name} is not installed; CI must test against a real Redis (.ci/run installs it)")
    return binary


def start_redis(binary: str, port: int, workdir: Path, *args: str) -> subprocess.Popen[bytes]:
    """A redis-server (or sentinel, with `--sentinel` in args) on 127.0.0.1:`port`, answering PING."""
    proc = subprocess.Popen(
        [binary, *args, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    favour(proc.pid)
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        for _ in range(100):
            if proc.poll() is not None:
                break  # it exited (say, the port was taken meanwhile): whatever answers is not ours
            try:
                client.ping()
                return proc
            except redis.ConnectionError:
                time.sleep(0.05)
    finally:
        client.close()
    stop_redis([proc])
    pytest.fail(f"redis-server {' '.join(args)} did not start on port {port}")


def favour(pid: int) -> None:
    """Run a test's redis-server ahead of the test processes where that is allowed (as root, in CI).

    `make test` keeps both cores busy with several workers; a redis-server that waits for the CPU
    mid-command would count the wait in SLOWLOG, and the tests that hold scripts under a SLOWLOG
    threshold (tests/redis/test_bounded_scripts.py) would measure the scheduler instead of the script.
    Elsewhere the server keeps the default priority."""
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, pid, -10)


def stop_redis(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=10)


DATA_ARGS = ("--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction")
