"""Instructions Redis executes per script: each operation's scripts, run as a tool call runs them (for an
agent: its presence renewed, its notices returned), against a redis-server under valgrind's callgrind,
which counts instructions rather than time. The count is the same from run to run whatever else the
machine does, where time inside Redis (`redis_time.py`) swings by a fifth or more on a shared VM: the
figure to compare two versions of the scripts by (run it on each checkout).

    .venv/bin/python bench/redis_instructions.py [--calls 100]

Needs valgrind (Debian's package) beside redis-server; Redis runs about fifty times slower under it.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
from pathlib import Path

from processes import AGENT, free_port, stop, wait_for_port
from workloads import RawScripts, create_tasks, raw_workloads, redis_client

from mcp_agentbus.settings import Settings

WARMUP = 5  # runs of each operation first, so every script is loaded


def callgrind_total(dump: Path) -> int:
    """The instructions one callgrind dump counted (its `summary:` or `totals:` line)."""
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"{dump} has no instruction total")


def counted(pid: int, workdir: Path, control: str) -> int:
    """Instructions since the counters were last zeroed: a dump, read and removed."""
    before = set(workdir.glob("callgrind.*"))
    subprocess.run([control, "--dump", str(pid)], check=True, capture_output=True)
    dumps = set(workdir.glob("callgrind.*")) - before
    total = sum(callgrind_total(dump) for dump in dumps)
    for dump in dumps:
        dump.unlink()
    return total


async def measure(url: str, pid: int, workdir: Path, control: str, calls: int) -> None:
    settings = Settings(redis_url=url, namespace="instructions", agent=AGENT)
    async with redis_client(url) as redis:
        await create_tasks(redis, settings, calls + WARMUP)
        raw = RawScripts(redis, settings, caller=f"{AGENT},0")
        print(f"{'operation':<32} {'k instructions per script':>26}")
        for workload in raw_workloads(raw):
            for _ in range(WARMUP):
                value = None
                for step in workload.steps:
                    value = await step(value)
            # Blocking on purpose: nothing else of the bench may run while the counters are set.
            subprocess.run([control, "--zero", str(pid)], check=True, capture_output=True)  # noqa: ASYNC221
            for _ in range(calls):
                value = None
                for step in workload.steps:
                    value = await step(value)
            scripts = calls * len(workload.steps)
            total = counted(pid, workdir, control)
            name = f"{workload.name} {'+'.join(workload.step_names)}"
            print(f"{name:<32} {total / scripts / 1000:>26.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100, help="runs of each operation counted")
    args = parser.parse_args()
    valgrind, control, redis = (shutil.which(n) for n in ("valgrind", "callgrind_control", "redis-server"))
    if valgrind is None or control is None or redis is None:
        raise SystemExit("bench: needs valgrind (with callgrind_control) and redis-server on PATH")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="agentbus-instructions-") as tmp:
        workdir = Path(tmp)
        command = [valgrind, "--tool=callgrind", f"--callgrind-out-file={workdir}/callgrind.%p"]
        command += [redis, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
        command += ["--dir", str(workdir)]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, proc, seconds=60)
            asyncio.run(measure(f"redis://127.0.0.1:{port}/0", proc.pid, workdir, control, args.calls))
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
