"""Latency of agentbus against its floors: a Redis round trip, the raw Lua scripts, and the MCP SDK's
no-op tool on the same transport.

    .venv/bin/python bench/bench.py [--quick] [--json PATH] [--redis-url URL]

Every figure is sequential round trips after a warm-up; every loop stops at a count or a time limit,
whichever comes first. Workloads compared with each other run interleaved, in rounds, so that load
from other processes on the machine falls on both sides alike. bench/README.md explains the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from noop_server import build_noop_server

from mcp_agentbus.bus import AgentBus
from mcp_agentbus.connection import Redis, connect
from mcp_agentbus.keys import Keys
from mcp_agentbus.scripts import source
from mcp_agentbus.server import build_server
from mcp_agentbus.settings import Settings

BENCH_DIR = Path(__file__).resolve().parent
AGENT = "bench-worker"
CORE_GOAL_RATIO = 1.3  # a core op may cost at most 1.3x the raw scripts
TOOL_GOAL_MS = 0.3  # a tool call may cost at most 0.3 ms (p50) more than the no-op tool

# One step of an operation: gets the previous step's result (None for the first) and returns its own.
Step = Callable[[Any], Awaitable[Any]]
Lease = tuple[str, str]  # (task_id, lease_token), from claim to complete


# --- budgets ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """A loop stops after `ops` operations or `seconds`, whichever comes first."""

    ops: int
    seconds: float

    def share(self, rounds: int) -> Budget:
        return Budget(math.ceil(self.ops / rounds), self.seconds / rounds)


@dataclass(frozen=True)
class Plan:
    warmup: Budget
    redis: Budget  # PING, raw scripts, core API
    memory: Budget  # MCP in-memory
    stdio: Budget  # MCP over stdio, per mode
    rounds: int  # interleaved rounds per comparison

    def tasks_needed(self, budget: Budget) -> int:
        """Tasks one claim+complete workload can consume: its warm-up and every round."""
        return self.warmup.ops + self.rounds * budget.share(self.rounds).ops


FULL = Plan(
    warmup=Budget(300, 5),
    redis=Budget(20_000, 20),
    memory=Budget(5_000, 10),
    stdio=Budget(3_000, 15),
    rounds=5,
)
QUICK = Plan(
    warmup=Budget(30, 2),
    redis=Budget(500, 3),
    memory=Budget(300, 3),
    stdio=Budget(200, 4),
    rounds=2,
)


# --- timing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """One operation made of steps (claim, complete), each timed on its own."""

    name: str
    steps: list[Step]
    step_names: tuple[str, ...] = ("claim", "complete")


Samples = list[list[float]]  # seconds, one list per step


async def run_steps(steps: list[Step], budget: Budget) -> Samples:
    samples: Samples = [[] for _ in steps]
    deadline = time.perf_counter() + budget.seconds
    done = 0
    while done < budget.ops and time.perf_counter() < deadline:
        value = None
        for step, times in zip(steps, samples, strict=True):
            start = time.perf_counter()
            value = await step(value)
            times.append(time.perf_counter() - start)
        done += 1
    return samples


async def interleave(workloads: list[Workload], plan: Plan, budget: Budget) -> dict[str, Samples]:
    """Warm each workload up, then run them in turn, a share of `budget` per round."""
    for workload in workloads:
        await run_steps(workload.steps, plan.warmup)
    results: dict[str, Samples] = {w.name: [[] for _ in w.steps] for w in workloads}
    for _ in range(plan.rounds):
        for workload in workloads:
            new = await run_steps(workload.steps, budget.share(plan.rounds))
            for series, more in zip(results[workload.name], new, strict=True):
                series.extend(more)
    return results


def pair_total(samples: Samples) -> list[float]:
    return [first + second for first, second in zip(*samples, strict=True)]


# --- rows -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    max_ratio: float | None = None
    max_delta_ms: float | None = None

    def text(self) -> str:
        return f"<={self.max_ratio}x" if self.max_ratio is not None else f"<=+{self.max_delta_ms}ms"

    def met(self, ratio: float, delta_ms: float) -> bool:
        if self.max_ratio is not None:
            return ratio <= self.max_ratio
        return self.max_delta_ms is not None and delta_ms <= self.max_delta_ms


@dataclass(frozen=True)
class Row:
    section: str
    name: str
    n: int
    p50_ms: float
    p99_ms: float
    ops_per_s: float
    vs: str | None = None  # the floor this row is compared with
    ratio: float | None = None  # p50 / floor p50
    delta_ms: float | None = None  # p50 - floor p50
    goal: str | None = None
    goal_met: bool | None = None


def make_row(
    section: str,
    name: str,
    samples: list[float],
    vs: Row | None = None,
    times: int = 1,
    goal: Goal | None = None,
) -> Row:
    """Stats of `samples`, compared with `times` x the p50 of row `vs`."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    p50, p99 = cuts[49] * 1000, cuts[98] * 1000
    row = Row(section, name, len(samples), p50, p99, len(samples) / sum(samples))
    if vs is None:
        return row
    floor = vs.p50_ms * times
    ratio, delta = p50 / floor, p50 - floor
    return replace(
        row,
        vs=f"{times}x {vs.name}" if times > 1 else vs.name,
        ratio=ratio,
        delta_ms=delta,
        goal=goal.text() if goal else None,
        goal_met=goal.met(ratio, delta) if goal else None,
    )


def pair_rows(
    section: str,
    name: str,
    samples: Samples,
    call_floors: tuple[Row, Row],
    pair_floor: tuple[Row, int],
    call_goal: Goal | None = None,
    pair_goal: Goal | None = None,
    steps: tuple[str, ...] = ("claim", "complete"),
) -> list[Row]:
    """Rows for each step of a two-step workload (claim, complete) and for the pair."""
    first, second = samples
    return [
        make_row(section, f"{name} {steps[0]}", first, call_floors[0], goal=call_goal),
        make_row(section, f"{name} {steps[1]}", second, call_floors[1], goal=call_goal),
        make_row(section, f"{name} {'+'.join(steps)}", pair_total(samples), *pair_floor, goal=pair_goal),
    ]


# --- Redis ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not listen on port {port} within {seconds:g} s")


@contextmanager
def own_redis() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port, without persistence; stopped on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench: redis-server is not on PATH; install it or pass --redis-url")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="agentbus-bench-") as workdir:
        command = [binary, "--bind", "127.0.0.1", "--port", str(port)]
        command += ["--save", "", "--appendonly", "no", "--dir", workdir]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, proc)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    """The Redis at `url`, or a throwaway one when none is given."""
    if url is not None:
        yield url
        return
    with own_redis() as own:
        yield own


@asynccontextmanager
async def redis_client(url: str) -> AsyncIterator[Redis]:
    """A client configured exactly as the bus configures its own."""
    redis = connect(url)
    try:
        yield redis
    finally:
        await redis.aclose()


def common_argv(settings: Settings) -> list[Any]:
    """The ARGV every script gets first, as `Store.run` passes it (no notices wanted)."""
    return [settings.event_retention, settings.retention_seconds * 1000, ""]


async def create_tasks(redis: Redis, settings: Settings, count: int) -> None:
    """`count` ready tasks in the settings' namespace, made by the bus's own create_task script."""
    sha = await redis.script_load(source("create_task"))
    keys = Keys(settings.namespace).script_keys
    args = [*common_argv(settings), AGENT, "", "bench task", "", "any", "normal", "null", "", "", 3, 0]
    for start in range(0, count, 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for _ in range(min(1000, count - start)):
                pipe.evalsha(sha, len(keys), *keys, *args)
            for reply in await pipe.execute():
                expect_ok("create_task", reply)


async def drop_namespace(redis: Redis, namespace: str) -> None:
    """Delete every key of `namespace`, so a run leaves a shared Redis as it found it."""
    batch: list[str] = []
    async for key in redis.scan_iter(match=f"{Keys(namespace).prefix}*", count=1000):
        batch.append(key)
        if len(batch) == 1000:
            await redis.unlink(*batch)
            batch.clear()
    if batch:
        await redis.unlink(*batch)


def expect_ok(script: str, reply: list[Any]) -> None:
    if reply[0] != "ok":
        raise RuntimeError(f"{script} answered {reply!r}")


# --- workloads --------------------------------------------------------------------------------------


def ping_workload(redis: Redis) -> Workload:
    async def ping(_: None) -> None:
        await redis.ping()

    return Workload("ping", [ping])


async def raw_script_workload(redis: Redis, settings: Settings) -> Workload:
    """claim_task + complete_task by plain EVALSHA, with the arguments `Tasks` passes."""
    claim_sha = await redis.script_load(source("claim_task"))
    complete_sha = await redis.script_load(source("complete_task"))
    keys = Keys(settings.namespace).script_keys
    common = common_argv(settings)
    lease_ms = settings.lease_seconds * 1000

    async def claim(_: None) -> Lease:
        token = secrets.token_urlsafe(12)
        args = (AGENT, lease_ms, token, "", "")  # task_id: "" (the best), capabilities: "" (default)
        reply = await redis.evalsha(claim_sha, len(keys), *keys, *common, *args)
        expect_ok("claim_task", reply)
        return reply[1], token

    async def complete(lease: Lease) -> None:
        task_id, token = lease
        args = (AGENT, task_id, token, "null", "")  # result: JSON null, summary: ""
        reply = await redis.evalsha(complete_sha, len(keys), *keys, *common, *args)
        expect_ok("complete_task", reply)

    return Workload("raw", [claim, complete])


def core_workload(bus: AgentBus) -> Workload:
    async def claim(_: None) -> Lease:
        result = await bus.tasks.claim(AGENT)
        if result.task is None or result.lease is None:
            raise RuntimeError(f"claim found no task: {result.reason}")
        return result.task.id, result.lease.lease_token

    async def complete(lease: Lease) -> None:
        await bus.tasks.complete(AGENT, *lease)

    return Workload("core", [claim, complete])


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    if result.is_error or result.structured_content is None:
        raise RuntimeError(f"{tool} failed: {result.content}")
    data: dict[str, Any] = result.structured_content
    return data


def noop_workload(client: Client) -> Workload:
    async def noop(_: None) -> None:
        await call(client, "noop", {})

    return Workload("noop", [noop])


def tool_workload(client: Client) -> Workload:
    async def claim(_: None) -> Lease:
        data = await call(client, "claim_task", {})
        if data["task"] is None:
            raise RuntimeError(f"claim_task found no task: {data['reason']}")
        return data["task"]["id"], data["lease"]["lease_token"]

    async def complete(lease: Lease) -> None:
        task_id, token = lease
        await call(client, "complete_task", {"task_id": task_id, "lease_token": token})

    return Workload("tools", [claim, complete])


def message_workload(client: Client) -> Workload:
    """send_message to oneself, then read_inbox."""

    async def send(_: None) -> str:
        data = await call(client, "send_message", {"to": AGENT, "body": "ping", "subject": "bench"})
        return str(data["message_id"])

    async def read(message_id: str) -> None:
        data = await call(client, "read_inbox", {"limit": 1})
        if [m["id"] for m in data["messages"]] != [message_id]:
            raise RuntimeError(f"read_inbox returned {data['messages']}, expected {message_id}")

    return Workload("messages", [send, read], ("send", "read"))


def lock_workload(client: Client) -> Workload:
    async def acquire(_: None) -> str:
        data = await call(client, "acquire_lock", {"resource": "bench/file.py"})
        if not data["acquired"]:
            raise RuntimeError(f"acquire_lock refused: {data}")
        return str(data["lock_token"])

    async def release(token: str) -> None:
        await call(client, "release_lock", {"resource": "bench/file.py", "lock_token": token})

    return Workload("locks", [acquire, release], ("acquire", "release"))


# --- sections ---------------------------------------------------------------------------------------


@dataclass
class Run:
    """What one benchmark run shares: the Redis, the plan, and the namespaces to clean up."""

    redis_url: str
    plan: Plan
    redis: Redis
    namespaces: list[str]

    async def namespace_with_tasks(self, label: str, budget: Budget) -> Settings:
        """Settings of a fresh namespace holding the tasks a claim+complete workload can consume."""
        namespace = f"bench-{secrets.token_hex(3)}-{label}"
        self.namespaces.append(namespace)
        settings = Settings(redis_url=self.redis_url, namespace=namespace, agent=AGENT)
        await create_tasks(self.redis, settings, self.plan.tasks_needed(budget))
        return settings


async def redis_section(run: Run) -> list[Row]:
    """PING, the raw scripts and the core API, interleaved."""
    budget = run.plan.redis
    raw_settings = await run.namespace_with_tasks("raw", budget)
    core_settings = await run.namespace_with_tasks("core", budget)
    async with AgentBus.open(core_settings) as bus:
        scripts = await raw_script_workload(run.redis, raw_settings)
        samples = await interleave([ping_workload(run.redis), scripts, core_workload(bus)], run.plan, budget)
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
    samples = await interleave([noop_workload(noop), *pairs], run.plan, budget)
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


# --- report -----------------------------------------------------------------------------------------

COLUMNS = ("section", "row", "n", "p50 ms", "p99 ms", "ops/s", "vs floor", "ratio", "diff ms", "goal")
NUMERIC_COLUMNS = {2, 3, 4, 5, 7, 8}


def cells(row: Row) -> tuple[str, ...]:
    goal = f"{row.goal} {'ok' if row.goal_met else 'MISSED'}" if row.goal else ""
    return (
        row.section,
        row.name,
        str(row.n),
        f"{row.p50_ms:.3f}",
        f"{row.p99_ms:.3f}",
        f"{row.ops_per_s:,.0f}",
        row.vs or "",
        f"{row.ratio:.2f}x" if row.ratio is not None else "",
        f"{row.delta_ms:+.3f}" if row.delta_ms is not None else "",
        goal,
    )


def table(rows: list[Row]) -> str:
    lines = [COLUMNS, *(cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    return "\n".join(table_line(line, widths) for line in lines)


def table_line(line: tuple[str, ...], widths: list[int]) -> str:
    padded = (
        cell.rjust(width) if i in NUMERIC_COLUMNS else cell.ljust(width)
        for i, (cell, width) in enumerate(zip(line, widths, strict=True))
    )
    return "  ".join(padded).rstrip()


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


async def benchmark(redis_url: str, plan: Plan) -> tuple[list[Row], str]:
    """Every section in turn; returns the rows and the Redis server version."""
    async with redis_client(redis_url) as redis:
        run = Run(redis_url, plan, redis, namespaces=[])
        try:
            info = await redis.info("server")
            rows = await redis_section(run)
            rows += await memory_section(run)
            for mode in ("legacy", "auto"):
                rows += await stdio_section(run, mode)
        finally:
            for namespace in run.namespaces:
                await drop_namespace(redis, namespace)
    return rows, str(info["redis_version"])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="run every path briefly (CI: under 60 s)")
    parser.add_argument(
        "--json", type=Path, default=BENCH_DIR / "results" / "latest.json", help="where to write the rows"
    )
    parser.add_argument("--redis-url", help="use this Redis instead of starting a throwaway redis-server")
    args = parser.parse_args()
    if args.redis_url and args.redis_url.startswith("memory://"):
        parser.error("--redis-url must be a real Redis: the stdio servers cannot share a memory:// store")
    return args


def main() -> None:
    args = parse_args()
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    env = environment(args.quick)
    with redis_server(args.redis_url) as url:
        rows, env["redis_server"] = asyncio.run(benchmark(url, plan))
    env["load_average_at_end"] = os.getloadavg()
    report = {
        "environment": env,
        "plan": asdict(plan),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "rows": [asdict(row) for row in rows],
    }
    print(table(rows))
    load = f"{env['load_average_at_start'][0]:.2f} -> {env['load_average_at_end'][0]:.2f}"
    print(f"\n{len(rows)} rows in {report['wall_seconds']} s (1-min load {load}); JSON: {args.json}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
