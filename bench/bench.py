"""Every agentbus operation against its floors: a Redis round trip, the raw Lua scripts, and the MCP
SDK's no-op tool on the same transport (in-memory, stdio, streamable HTTP); concurrent agents on every
transport; the scale sections (claim at depth, 1,000 heartbeating agents, memory); and a soak (events and
messages at a steady rate, Redis memory flat once the namespace's bounds are reached).

    .venv/bin/python bench/bench.py [--quick] [--only SECTION ...] [--json PATH] [--redis-url URL]

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

from cascade import cascade_section
from harness import Budget, Goal, Row, Workload, interleave, make_row, operation_rows, table
from heartbeats import heartbeats_section
from mcp import Client, StdioServerParameters
from noop_server import build_noop_server
from plan import FULL, QUICK, Plan, Run
from processes import (
    BENCH_DIR,
    START_SECONDS,
    agentbus_env,
    agentbus_http_spec,
    cpu_clock,
    http_servers,
    noop_http_spec,
    redis_server,
    stdio_params,
    stdio_servers,
)
from redis_time import redis_time_section
from scale import depth_section, retention_section
from server_cpu import server_cpu_section
from soak import soak_section
from waiters import idle_section, waiters_section
from workloads import (
    RawScripts,
    core_workloads,
    drop_namespace,
    http_client,
    noop_workload,
    ping_tool_workload,
    ping_workload,
    raw_workloads,
    redis_client,
    tool_workloads,
)

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.redis.keys import Keys
from mcp_agentbus.server.app import build_server
from mcp_agentbus.settings import Settings

CORE_GOAL_RATIO = 1.3  # a core op may cost at most 1.3x the raw scripts
TOOL_GOAL_MS = 0.5  # a tool call may cost at most 0.5 ms (p50) more than the no-op tool (issue 18)
CONCURRENT_MODE = "legacy"  # the protocol era of concurrent agents: the handshake Claude Code speaks


async def redis_section(run: Run) -> list[Row]:
    """PING, every operation by its raw scripts and through the core API, interleaved; then each raw
    script step alone, for its time inside Redis (redis_time.py)."""
    budget = run.plan.redis
    raw_settings = await run.namespace_with_tasks("raw", budget)
    core_settings = await run.namespace_with_tasks("core", budget)
    async with AgentBus.open(core_settings) as bus:
        raw = raw_workloads(RawScripts(run.redis, raw_settings))
        core = core_workloads(bus)
        ping, *samples = await interleave(
            [ping_workload(run.redis), *raw, *core], budget, run.plan.warmup, run.plan.rounds
        )
    section = "redis + core"
    ping_row = make_row(section, "PING", ping[0])
    rows = [ping_row]
    for raw_op, raw_samples, core_op, core_samples in zip(
        raw, samples[: len(raw)], core, samples[len(raw) :], strict=True
    ):
        steps = len(raw_op.steps)
        floors = operation_rows(section, "raw", raw_op, raw_samples, [ping_row] * steps, (ping_row, steps))
        rows += floors
        rows += operation_rows(
            section,
            "core",
            core_op,
            core_samples,
            floors[:steps],
            (floors[-1], 1),
            operation_goal=Goal(max_ratio=CORE_GOAL_RATIO),
        )
    await redis_time_section(run)
    return rows


async def mcp_section(
    run: Run, section: str, noop: Client, tools: Client, budget: Budget, sdk_noop: Client | None = None
) -> list[Row]:
    """The no-op tool, the no-op server's tool that makes one Redis PING (what waiting on one round trip
    costs any tool; the no-op tool never waits), and every operation by agentbus tool calls,
    interleaved, on one transport. Where agentbus serves the transport otherwise than the SDK does
    (stdio), `noop` is served as agentbus serves it, and `sdk_noop` is the no-op server as the SDK
    serves it, shown beside."""
    operations = tool_workloads(tools)
    floors = [noop_workload(noop), ping_tool_workload(noop)]
    if sdk_noop is not None:
        floors.append(noop_workload(sdk_noop))
    floor, ping, *samples = await interleave([*floors, *operations], budget, run.plan.warmup, run.plan.rounds)
    noop_row = make_row(section, "no-op tool", floor[0])
    rows = [noop_row, make_row(section, "no-op tool, one PING", ping[0], noop_row)]
    if sdk_noop is not None:
        sdk, *samples = samples
        rows.append(make_row(section, "no-op tool, the SDK's transport", sdk[0], noop_row))
    for operation, operation_samples in zip(operations, samples, strict=True):
        steps = len(operation.steps)
        rows += operation_rows(
            section,
            "agentbus",
            operation,
            operation_samples,
            [noop_row] * steps,
            (noop_row, steps),
            step_goal=Goal(max_delta_ms=TOOL_GOAL_MS),
        )
    return rows


async def memory_section(run: Run) -> list[Row]:
    settings = await run.namespace_with_tasks("memory", run.plan.memory)
    async with (
        redis_client(settings.redis_url) as redis,
        Client(build_noop_server(redis)) as noop,
        Client(build_server(settings)) as tools,
    ):
        section = f"mcp in-memory auto {tools.protocol_version}"
        return await mcp_section(run, section, noop, tools, run.plan.memory)


async def stdio_sections(run: Run) -> list[Row]:
    return [*await stdio_section(run, "legacy"), *await stdio_section(run, "auto")]


async def stdio_section(run: Run, mode: str) -> list[Row]:
    settings = await run.namespace_with_tasks(f"stdio-{mode}", run.plan.stdio)
    sdk_noop_server, noop_server, agentbus_server = stdio_servers(settings)
    async with (
        Client(noop_server, mode=mode) as noop,
        Client(sdk_noop_server, mode=mode) as sdk_noop,
        Client(agentbus_server, mode=mode) as tools,
    ):
        section = f"mcp stdio {mode} {tools.protocol_version}"
        return await mcp_section(run, section, noop, tools, run.plan.stdio, sdk_noop)


async def http_sections(run: Run) -> list[Row]:
    """The no-op tool and the agentbus tools over streamable HTTP, one client each, both eras. One server
    process of each kind serves both eras; their tasks share one namespace."""
    settings = await run.namespace_with_tasks("http", run.plan.http, workloads=2)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="agentbus-bench-http-") as tmp:
        workdir = Path(tmp)
        specs = [
            noop_http_spec(redis_url=settings.redis_url),
            agentbus_http_spec(settings, "(sequential)", workdir),
        ]
        async with http_servers(run.warnings, specs, workdir) as (noop_server, agentbus_server):
            for mode in ("legacy", "auto"):
                async with (
                    http_client(noop_server, mode) as noop,
                    http_client(agentbus_server, mode) as tools,
                ):
                    section = f"mcp http {mode} {tools.protocol_version}"
                    rows += await mcp_section(run, section, noop, tools, run.plan.http)
    return rows


# --- concurrent agents ----------------------------------------------------------------------------


@dataclass
class Tickets:
    """The shared bound of one concurrent loop: `left` more pairs may start, until `deadline`."""

    left: int
    deadline: float

    def take(self) -> bool:
        if self.left <= 0 or time.perf_counter() >= self.deadline:
            return False
        self.left -= 1
        return True


@dataclass
class Swarm:
    """One configuration: `agents` agents, each with its own client, spread over `processes` servers."""

    agents: int
    processes: int
    members: list[Workload]  # claim+complete, each as its own agent
    pairs: list[float] = field(default_factory=list)  # seconds per claim+complete, all agents
    elapsed: float = 0.0  # wall seconds of the measured rounds, each from its start to its last pair's end
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds of each process over `elapsed`

    @property
    def name(self) -> str:
        agents = f"{self.agents} agent{'s' if self.agents > 1 else ''}"
        return f"{agents}, {self.processes} process{'es' if self.processes > 1 else ''}"


CpuClock = Callable[[], dict[str, float]]  # CPU seconds so far, by process


async def run_swarm(swarm: Swarm, budget: Budget, completed: list[str], cpu: CpuClock) -> None:
    """One round: every member loops claim -> complete until the shared tickets run out; adds the round
    to `swarm`. Completed task ids are appended to `completed`."""
    before = cpu()
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
    after = cpu()
    for name in before.keys() & after.keys():
        swarm.cpu[name] = swarm.cpu.get(name, 0.0) + after[name] - before[name]


def swarms(
    sizes: tuple[int, ...], first: list[Workload], second: list[Workload] | None = None
) -> list[Swarm]:
    """A configuration per size on the first server; with a second server, each size above one also
    split half/half over both."""
    out: list[Swarm] = []
    for n in sizes:
        out.append(Swarm(n, 1, first[:n]))
        if second is not None and n > 1:
            out.append(Swarm(n, 2, first[: n // 2] + second[: n - n // 2]))
    return out


async def measure_swarms(
    run: Run, section: str, settings: Settings, configs: list[Swarm], cpu: CpuClock
) -> list[Row]:
    """The configurations interleaved, in rounds, after the biggest have warmed up every client and
    server; then every completed task id must be distinct and the queue must add up."""
    plan = run.plan
    completed: list[str] = []
    biggest = max(swarm.agents for swarm in configs)
    for swarm in configs:
        if swarm.agents == biggest:
            await run_swarm(replace(swarm, pairs=[], cpu={}), plan.warmup, completed, cpu)
    for _ in range(plan.rounds):
        for swarm in configs:
            await run_swarm(swarm, plan.concurrent.share(plan.rounds), completed, cpu)
    await check_queue(run, section, settings, len(configs) * plan.tasks_needed(plan.concurrent), completed)
    return swarm_rows(section, configs)


def tasks_of(workloads: list[Workload]) -> Workload:
    return next(w for w in workloads if w.name == "tasks")


def agent_id(server: str, i: int) -> str:
    return f"bench-{server}{i:02d}"


async def concurrent_core(run: Run) -> list[Row]:
    """N agents on one core API (one AgentBus: what one server process shares among its sessions)."""
    sizes = run.plan.agents
    configs = [(n, 1) for n in sizes]
    settings = await run.namespace_with_tasks("conc-core", run.plan.concurrent, workloads=len(configs))
    async with AgentBus.open(settings) as bus:
        members = [tasks_of(core_workloads(bus, agent_id("c", i))) for i in range(max(sizes))]
        cpu = cpu_clock({"bench": os.getpid(), "redis": run.redis_pid})
        return await measure_swarms(run, "concurrent: core", settings, swarms(sizes, members), cpu)


async def concurrent_memory(run: Run) -> list[Row]:
    """N in-memory MCP clients in one process, each running the server in-process (its own lifespan,
    so its own AgentBus), as N embedded agents would."""
    sizes = run.plan.agents
    settings = await run.namespace_with_tasks("conc-memory", run.plan.concurrent, workloads=len(sizes))
    async with AsyncExitStack() as stack:
        members = []
        for i in range(max(sizes)):
            client = await stack.enter_async_context(Client(build_server(settings)))
            members.append(tasks_of(tool_workloads(client, agent_id("m", i))))
        cpu = cpu_clock({"bench": os.getpid(), "redis": run.redis_pid})
        section = f"concurrent: mcp in-memory auto {client.protocol_version}"
        return await measure_swarms(run, section, settings, swarms(sizes, members), cpu)


async def concurrent_stdio(run: Run) -> list[Row]:
    """N stdio server processes, one client each: how N local agents (one Claude Code session each)
    share a bus. The servers start together; each client lives in its own task, as the SDK requires."""
    sizes = run.plan.agents
    settings = await run.namespace_with_tasks("conc-stdio", run.plan.concurrent, workloads=len(sizes))
    clients: list[Client] = []
    ready, stop = asyncio.Event(), asyncio.Event()

    async def hold(params: StdioServerParameters) -> None:
        async with Client(params, mode=CONCURRENT_MODE) as client:
            clients.append(client)
            if len(clients) == max(sizes):
                ready.set()
            await stop.wait()

    async with asyncio.TaskGroup() as group:
        for _ in range(max(sizes)):
            group.create_task(hold(stdio_params(["-m", "mcp_agentbus", "serve"], agentbus_env(settings))))
        try:
            await asyncio.wait_for(ready.wait(), START_SECONDS * 3)
            members = [tasks_of(tool_workloads(c, agent_id("s", i))) for i, c in enumerate(clients)]
            pids = {"bench": os.getpid(), "redis": run.redis_pid}
            cpu = cpu_clock(pids, children=f"{max(sizes)} servers")
            section = f"concurrent: mcp stdio {CONCURRENT_MODE} {clients[0].protocol_version}"
            return await measure_swarms(run, section, settings, swarms(sizes, members), cpu)
        finally:
            stop.set()


async def concurrent_http(run: Run) -> list[Row]:
    """N HTTP clients on one server process, and split over two (A and B) on the same Redis and
    namespace: the bus is only in Redis, so together they are one bus."""
    sizes = run.plan.agents
    configs = swarms(sizes, [], [])
    settings = await run.namespace_with_tasks("conc-http", run.plan.concurrent, workloads=len(configs))
    with tempfile.TemporaryDirectory(prefix="agentbus-bench-http-") as tmp:
        workdir = Path(tmp)
        specs = [agentbus_http_spec(settings, name, workdir) for name in ("A", "B")]
        async with http_servers(run.warnings, specs, workdir) as (a, b), AsyncExitStack() as stack:
            members: dict[str, list[Workload]] = {"A": [], "B": []}
            for name, server, count in (("A", a, max(sizes)), ("B", b, max(sizes) // 2)):
                for i in range(count):
                    client = await stack.enter_async_context(http_client(server, CONCURRENT_MODE))
                    members[name].append(tasks_of(tool_workloads(client, agent_id(name.lower(), i))))
            cpu = cpu_clock({"bench": os.getpid(), "A": a.proc.pid, "B": b.proc.pid, "redis": run.redis_pid})
            section = f"concurrent: mcp http {CONCURRENT_MODE} {client.protocol_version}"
            configs = swarms(sizes, members["A"], members["B"])
            return await measure_swarms(run, section, settings, configs, cpu)


async def concurrent_sections(run: Run) -> list[Row]:
    rows: list[Row] = []
    for section in (concurrent_core, concurrent_memory, concurrent_stdio, concurrent_http):
        rows += await section(run)
    return rows


async def check_queue(run: Run, section: str, settings: Settings, created: int, completed: list[str]) -> None:
    """No task was completed twice, none is still leased, and the queue lost exactly the completed ones."""
    twice = sorted(task for task, count in Counter(completed).items() if count > 1)
    if twice:
        run.failures.append(f"{section}: {len(twice)} task(s) completed more than once: {twice[:10]}")
    prefix = Keys(settings.namespace).prefix
    ready = await run.redis.zcard(f"{prefix}ready:any")
    leased = await run.redis.zcard(f"{prefix}leases")
    if ready != created - len(completed) or leased != 0:
        run.failures.append(
            f"{section}: {created} tasks created, {len(completed)} completed, but {ready} still ready "
            f"(expected {created - len(completed)}) and {leased} still leased (expected 0)"
        )


def swarm_rows(section: str, configs: list[Swarm]) -> list[Row]:
    """One row per configuration; a two-process row is compared with the one-process row of its size."""
    rows: list[Row] = []
    single: dict[int, Row] = {}
    for swarm in configs:
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
    "cpu": server_cpu_section,
    "concurrent": concurrent_sections,
    "heartbeats": heartbeats_section,
    "retention": retention_section,  # before depth: dropping a million keys resizes Redis' tables
    "soak": soak_section,
    "depth": depth_section,
    "waiters": waiters_section,
    "idle": idle_section,
    "cascade": cascade_section,
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
    parser.add_argument("--quick", action="store_true", help="run every path briefly (CI: about 25 s)")
    parser.add_argument(
        "--json", type=Path, default=BENCH_DIR / "results" / "latest.json", help="where to write the rows"
    )
    parser.add_argument("--soak-minutes", type=int, default=0, help="also soak the default settings so long")
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
    plan = replace(QUICK if args.quick else FULL, soak_minutes=args.soak_minutes)
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
