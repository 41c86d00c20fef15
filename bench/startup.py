"""Start-up budgets: from spawning `agentbus serve` on stdio to the first `tools/list` answer (what Claude
Code waits for, with a 30 s limit), and the wall time of `agentbus hook` (run on every prompt or tool
call). Medians of a few runs, first run (cold) shown apart.

    .venv/bin/python bench/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from mcp_agentbus.redis.local import LocalBus

AGENTBUS = str(Path(sys.executable).parent / "agentbus")


async def spawn_to_tools_list(env: dict[str, str]) -> float:
    params = StdioServerParameters(command=AGENTBUS, args=["serve"], env=env)
    started = time.perf_counter()
    with open(os.devnull, "w") as errlog:  # noqa: ASYNC230 (opening /dev/null does not block)
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            await client.list_tools()
            return time.perf_counter() - started


def hook_wall(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([AGENTBUS, "hook", "--agent", "bench"], env=env, stdin=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def report(name: str, samples: list[float]) -> None:
    warm = samples[1:]
    print(
        f"{name:<40} cold {samples[0] * 1000:5.0f} ms   warm median {statistics.median(warm) * 1000:5.0f} ms"
        f"   (min {min(warm) * 1000:.0f}, max {max(warm) * 1000:.0f}, n={len(warm)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    state = Path(tempfile.mkdtemp(prefix="ab-bench-", dir="/tmp"))
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "XDG_STATE_HOME": str(state)}
    try:
        memory = {**base, "AGENTBUS_REDIS_URL": "memory://"}
        report(
            "serve (memory://) spawn -> tools/list",
            [anyio.run(spawn_to_tools_list, memory) for _ in range(runs)],
        )
        if shutil.which("redis-server"):
            local = {**base}
            report(
                "serve (local bus) spawn -> tools/list",
                [anyio.run(spawn_to_tools_list, local) for _ in range(runs)],
            )
            report("hook (local bus, nothing waiting)", [hook_wall(local) for _ in range(runs)])
    finally:
        LocalBus(state / "agentbus").stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
