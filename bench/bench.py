"""Latency of agentbus against its floors: a Redis round trip, the raw Lua scripts, and the MCP SDK's
no-op tool on the same transport (in-memory, stdio, streamable HTTP); and the throughput of concurrent
agents on one and on two HTTP server processes.

    .venv/bin/python bench/bench.py [--quick] [--json PATH] [--redis-url URL]

Every latency figure is sequential round trips after a warm-up; every loop stops at a count or a time
limit, whichever comes first. Workloads compared with each other run interleaved, in rounds, so that
load from other processes on the machine falls on both sides alike. bench/README.md explains the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import Budget, Goal, Row, Workload, interleave, make_row, pair_rows, table
from mcp import Client, StdioServerParameters
from noop_server import build_noop_server
from plan import FULL, QUICK, Plan, Run
from processes import (
    AGENT,
    BENCH_DIR,
    agentbus_http_spec,
    cpu_snapshot,
    http_servers,
    noop_http_spec,
    redis_server,
)
from workloads import (
    core_workload,
    drop_namespace,
    http_client,
    lock_workload,
    message_workload,
    noop_workload,
    ping_workload,
    raw_script_workload,
    redis_client,
    tool_workload,
)

from mcp_agentbus.bus import AgentBus
from mcp_agentbus.keys import Keys
from mcp_agentbus.server import build_server
from mcp_agentbus.settings import Settings

CORE_GOAL_RATIO = 1.3  # a core op may cost at most 1.3x the raw scripts
TOOL_GOAL_MS = 0.3  # a tool call may cost at most 0.3 ms (p50) more than the no-op tool
SWARM_SIZES = (8, 32)  # concurrent agents, each with its own MCP client over HTTP
SWARM_MODE = "legacy"  # their protocol era: the initialize handshake that Claude Code speaks


async def redis_section(run: Run) -> list[Row]:
    """PING, the raw scripts and the core API, interleaved."""
    budget = run.plan.redis
    raw_settings = await run.namespace_with_tasks("raw", budget)
    core_settings = await run.namespace_with_tasks("core", budget)
    async with AgentBus.open(core_settings) as bus:
        scripts = await raw_script_workload(run.redis, raw_settings)
        samples = await interleave(
            [ping_workload(run.redis), scripts, core_workload(bus)], budget, run.plan.warmup, run.plan.rounds
        )
    section = "redis + core"
    ping = make_row(section, "PING", samples["ping"][0])
    raw = pair_rows(section, "EVALSHA", samples["raw"], (ping, ping), (ping, 2))
    core = pair_rows(
        section,
        "AgentBus.tasks",
        samples["core"],
        (raw[0], raw[1]),
        (raw[2], 1),
        pair_goal=Goal(max_ratio=CORE_GOAL_RATIO),
    )
    return [ping, *raw, *core]


async def mcp_section(run: Run, section: str, noop: Client, tools: Client, budget: Budget) -> list[Row]:
    """The no-op tool and the agentbus tools in pairs (claim+complete, send+read, acquire+release),
    interleaved, on one transport."""
    pairs = [tool_workload(tools), message_workload(tools), lock_workload(tools)]
    samples = await interleave([noop_workload(noop), *pairs], budget, run.plan.warmup, run.plan.rounds)
    floor = make_row(section, "no-op tool", samples["noop"][0])
    rows = [floor]
    for workload in pairs:
        rows += pair_rows(
            section,
            "agentbus",
            samples[workload.name],
            (floor, floor),
            (floor, 2),
            call_goal=Goal(max_delta_ms=TOOL_GOAL_MS),
            steps=workload.step_names,
        )
    return rows


async def memory_section(run: Run) -> list[Row]:
    settings = await run.namespace_with_tasks("memory", run.plan.memory)
    async with Client(build_noop_server()) as noop, Client(build_server(settings)) as tools:
        section = f"mcp in-memory auto {tools.protocol_version}"
        return await mcp_section(run, section, noop, tools, run.plan.memory)


def stdio_params(args: list[str], env: dict[str, str] | None = None) -> StdioServerParameters:
    """A server subprocess on this Python; the SDK gives it a minimal environment, so PATH is passed on."""
    return StdioServerParameters(
        command=sys.executable, args=args, env={"PATH": os.environ.get("PATH", ""), **(env or {})}
    )


async def stdio_sections(run: Run) -> list[Row]:
    return [*await stdio_section(run, "legacy"), *await stdio_section(run, "auto")]


async def stdio_section(run: Run, mode: str) -> list[Row]:
    settings = await run.namespace_with_tasks(f"stdio-{mode}", run.plan.stdio)
    env = {
        "AGENTBUS_REDIS_URL": settings.redis_url,
        "AGENTBUS_NAMESPACE": settings.namespace,
        "AGENTBUS_AGENT": AGENT,
    }
    noop_server = stdio_params([str(BENCH_DIR / "noop_server.py")])
    agentbus_server = stdio_params(["-m", "mcp_agentbus", "serve"], env)
    async with Client(noop_server, mode=mode) as noop, Client(agentbus_server, mode=mode) as tools:
        section = f"mcp stdio {mode} {tools.protocol_version}"
        return await mcp_section(run, section, noop, tools, run.plan.stdio)


async def http_sections(run: Run) -> list[Row]:
    """The no-op tool and the agentbus tools over streamable HTTP, one client each, both eras. One server
    process of each kind serves both eras; their tasks share one namespace."""
    settings = await run.namespace_with_tasks("http", run.plan.http, workloads=2)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="agentbus-bench-http-") as tmp:
        workdir = Path(tmp)
        specs = [noop_http_spec(), agentbus_http_spec(settings, "(sequential)", workdir)]
        async with http_servers(run.warnings, specs, workdir) as (noop_server, agentbus_server):
            for mode in ("legacy", "auto"):
                async with (
                    http_client(noop_server, mode) as noop,
                    http_client(agentbus_server, mode) as tools,
                ):
                    section = f"mcp http {mode} {tools.protocol_version}"
                    rows += await mcp_section(run, section, noop, tools, run.plan.http)
    return rows


# --- concurrent agents over HTTP --------------------------------------------------------------------


@dataclass
class Tickets:
    """The shared bound of one swarm loop: `left` more pairs may start, until `deadline`."""

    left: int
    deadline: float

    def take(self) -> bool:
        if self.left <= 0 or time.perf_counter() >= self.deadline:
            return False
        self.left -= 1
        return True


@dataclass
class Swarm:
    """One configuration: `agents` clients, spread over `processes` server processes."""

    agents: int
    processes: int
    members: list[Workload]
    pairs: list[float] = field(default_factory=list)  # seconds per claim+complete, all agents
    elapsed: float = 0.0  # wall seconds of the measured rounds, each from its start to its last pair's end
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds of each process over `elapsed`

    @property
    def name(self) -> str:
        return f"{self.agents} agents, {self.processes} process{'es' if self.processes > 1 else ''}"


async def run_swarm(swarm: Swarm, budget: Budget, completed: list[str], pids: dict[str, int | None]) -> None:
    """One round: every member loops claim -> complete until the shared tickets run out; adds the round
    to `swarm`. Completed task ids are appended to `completed`."""
    before = cpu_snapshot(pids)
    start = time.perf_counter()
    tickets = Tickets(budget.ops, start + budget.seconds)

    async def agent(workload: Workload) -> None:
        claim, complete = workload.steps
        while tickets.take():
            begin = time.perf_counter()
            lease = await claim(None)
            await complete(lease)
            swarm.pairs.append(time.perf_counter() - begin)
            completed.append(lease[0])

    async with asyncio.TaskGroup() as group:
        for workload in swarm.members:
            group.create_task(agent(workload))
    swarm.elapsed += time.perf_counter() - start
    after = cpu_snapshot(pids)
    for name in pids:
        if name in before and name in after:
            swarm.cpu[name] = swarm.cpu.get(name, 0.0) + after[name] - before[name]


async def swarm_section(run: Run) -> list[Row]:
    """N concurrent agents (SWARM_SIZES), each with its own client and agent id, claim and complete
    tasks from one shared queue, on one server process and split half/half over two. Two processes run
    on the same Redis and namespace throughout; the one-process configurations use only the first.
    The configurations run interleaved, in rounds; every completed task id must be distinct."""
    plan = run.plan
    configs = [(n, processes) for n in SWARM_SIZES for processes in (1, 2)]
    settings = await run.namespace_with_tasks("swarm", plan.swarm, workloads=len(configs))
    created = len(configs) * plan.tasks_needed(plan.swarm)
    biggest = max(SWARM_SIZES)
    completed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="agentbus-bench-swarm-") as tmp:
        workdir = Path(tmp)
        specs = [agentbus_http_spec(settings, name, workdir) for name in ("A", "B")]
        async with http_servers(run.warnings, specs, workdir) as (a, b), AsyncExitStack() as clients:
            on = {"A": a, "B": b}
            members: dict[str, list[Workload]] = {"A": [], "B": []}
            for name, count in (("A", biggest), ("B", biggest // 2)):
                for i in range(count):
                    client = await clients.enter_async_context(http_client(on[name], SWARM_MODE))
                    members[name].append(tool_workload(client, agent=f"bench-{name.lower()}{i:02d}"))
            version = client.protocol_version
            swarms = [
                Swarm(n, p, members["A"][:n] if p == 1 else members["A"][: n // 2] + members["B"][: n // 2])
                for n, p in configs
            ]
            pids = {"bench": os.getpid(), "A": a.proc.pid, "B": b.proc.pid, "redis": run.redis_pid}
            for swarm in swarms:  # the biggest configurations warm up every client and both processes
                if swarm.agents == biggest:
                    await run_swarm(replace(swarm, pairs=[], cpu={}), plan.warmup, completed, pids)
            for _ in range(plan.rounds):
                for swarm in swarms:
                    await run_swarm(swarm, plan.swarm.share(plan.rounds), completed, pids)
    await check_swarm_queue(run, settings, created, completed)
    return swarm_rows(f"mcp http {SWARM_MODE} {version} swarm", swarms)


async def check_swarm_queue(run: Run, settings: Settings, created: int, completed: list[str]) -> None:
    """No task was completed twice, none is still leased, and the queue lost exactly the completed ones."""
    twice = sorted(task for task, count in Counter(completed).items() if count > 1)
    if twice:
        run.failures.append(f"swarm: {len(twice)} task(s) completed more than once: {twice[:10]}")
    prefix = Keys(settings.namespace).prefix
    ready = await run.redis.zcard(f"{prefix}ready:any")
    leased = await run.redis.zcard(f"{prefix}leases")
    if ready != created - len(completed) or leased != 0:
        run.failures.append(
            f"swarm: {created} tasks created, {len(completed)} completed, but {ready} still ready "
            f"(expected {created - len(completed)}) and {leased} still leased (expected 0)"
        )


def swarm_rows(section: str, swarms: list[Swarm]) -> list[Row]:
    """One row per configuration; a two-process row is compared with the one-process row of its size."""
    rows: list[Row] = []
    single: dict[int, Row] = {}
    for swarm in swarms:
        row = make_row(section, f"{swarm.name} claim+complete", swarm.pairs)
        rate = len(swarm.pairs) / swarm.elapsed
        row = replace(
            row,
            ops_per_s=rate,
            agents=swarm.agents,
            processes=swarm.processes,
            calls_per_s=2 * rate,
            cores={name: seconds / swarm.elapsed for name, seconds in swarm.cpu.items()},
        )
        if swarm.processes == 1:
            single[swarm.agents] = row
        elif swarm.agents in single:
            vs = single[swarm.agents]
            row = replace(row, vs=vs.name, speedup=rate / vs.ops_per_s)
        rows.append(row)
    return rows


def environment(quick: bool) -> dict[str, Any]:
    packages = ("mcp", "redis", "hiredis", "mcp-agentbus")
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "packages": {name: metadata.version(name) for name in packages},
    }


# --- main -------------------------------------------------------------------------------------------


Section = Callable[[Run], Awaitable[list[Row]]]
SECTIONS: dict[str, Section] = {
    "redis": redis_section,
    "memory": memory_section,
    "stdio": stdio_sections,
    "http": http_sections,
    "swarm": swarm_section,
}


async def benchmark(
    redis_url: str, redis_pid: int | None, plan: Plan, only: list[str]
) -> tuple[list[Row], Run, str]:
    """The sections named in `only` (all when empty) in turn; returns the rows, the run (its failures,
    warnings and figures) and the Redis server version."""
    async with redis_client(redis_url) as redis:
        run = Run(redis_url, plan, redis, redis_pid)
        rows: list[Row] = []
        try:
            info = await redis.info("server")
            for name, section in SECTIONS.items():
                if only and name not in only:
                    continue
                started = time.perf_counter()
                rows += await section(run)
                run.seconds[name] = round(time.perf_counter() - started, 1)
        finally:
            for namespace in run.namespaces:
                await drop_namespace(redis, namespace)
    return rows, run, str(info["redis_version"])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="run every path briefly (CI: about 40 s)")
    parser.add_argument(
        "--json", type=Path, default=BENCH_DIR / "results" / "latest.json", help="where to write the rows"
    )
    parser.add_argument("--redis-url", help="use this Redis instead of starting a throwaway redis-server")
    parser.add_argument(
        "--only", action="append", choices=list(SECTIONS), default=[], help="run this section (repeatable)"
    )
    args = parser.parse_args()
    if args.redis_url and args.redis_url.startswith("memory://"):
        parser.error("--redis-url must be a real Redis: server subprocesses cannot share a memory:// store")
    return args


def interrupt(signum: int, _: Any) -> None:
    """SIGTERM unwinds like Ctrl-C, so that the servers this run started are stopped."""
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    args = parse_args()
    plan = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, interrupt)
    started = time.perf_counter()
    env = environment(args.quick)
    with redis_server(args.redis_url) as (url, pid):
        rows, run, env["redis_server"] = asyncio.run(benchmark(url, pid, plan, args.only))
    env["load_average_at_end"] = os.getloadavg()
    report = {
        "environment": env,
        "plan": asdict(plan),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "section_seconds": run.seconds,
        "failures": run.failures,
        "warnings": run.warnings,
        "rows": [asdict(row) for row in rows],
        "figures": [asdict(figure) for figure in run.figures],
    }
    print(table(rows, run.figures))
    load = f"{env['load_average_at_start'][0]:.2f} -> {env['load_average_at_end'][0]:.2f}"
    print(f"\n{len(rows)} rows in {report['wall_seconds']} s (1-min load {load}); JSON: {args.json}")
    print("seconds per section: " + ", ".join(f"{name} {seconds:g}" for name, seconds in run.seconds.items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    for warning in run.warnings:
        print(f"\nbench: WARNING: {warning}", file=sys.stderr)
    for failure in run.failures:
        print(f"\nbench: FAILED: {failure}", file=sys.stderr)
    if run.failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
