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
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
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
SWARM_SIZES = (8, 32)  # concurrent agents, each with its own MCP client over HTTP
SWARM_MODE = "legacy"  # their protocol era: the initialize handshake that Claude Code speaks
START_SECONDS = 20.0  # bound on an HTTP server process answering /healthz (it takes about one)
STOP_SECONDS = 10.0  # bound on a server process exiting after SIGTERM, and again after SIGKILL

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
    http: Budget  # MCP over streamable HTTP, one client, per mode
    swarm: Budget  # claim+complete pairs of all concurrent agents together, per (agents, processes)
    rounds: int  # interleaved rounds per comparison

    def tasks_needed(self, budget: Budget) -> int:
        """Tasks one claim+complete workload can consume: its warm-up and every round."""
        return self.warmup.ops + self.rounds * budget.share(self.rounds).ops


# The full run must stay under 5 minutes on a 2-core VM. The time limits bind there: their sum, with
# every warm-up at its limit, is about 4.4 minutes, plus server starts; a typical run takes about 4.
FULL = Plan(
    warmup=Budget(200, 2),
    redis=Budget(20_000, 12),
    memory=Budget(5_000, 6),
    stdio=Budget(2_000, 8),
    http=Budget(2_000, 8),
    swarm=Budget(3_000, 6),
    rounds=5,
)
# --quick only checks that every path runs (CI: make bench-quick); about 30 s, 40 s on a busy VM.
QUICK = Plan(
    warmup=Budget(20, 1),
    redis=Budget(500, 3),
    memory=Budget(200, 2),
    stdio=Budget(100, 2),
    http=Budget(100, 1.5),
    swarm=Budget(100, 0.5),
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
    # Concurrent rows only: there n counts claim+complete pairs, p50/p99 are of one pair, and ops_per_s
    # is pairs completed by all agents together per second of wall time.
    agents: int | None = None
    processes: int | None = None
    calls_per_s: float | None = None  # tool calls per second of wall time: 2x ops_per_s
    speedup: float | None = None  # ops_per_s / the ops_per_s of row `vs`
    cores: dict[str, float] | None = None  # CPU seconds per wall second, by process


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
def own_redis() -> Iterator[tuple[str, int]]:
    """A throwaway redis-server on a free loopback port, without persistence; stopped on exit.
    Yields its URL and process id."""
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
            yield f"redis://127.0.0.1:{port}/0", proc.pid
        finally:
            stop(proc)


@contextmanager
def redis_server(url: str | None) -> Iterator[tuple[str, int | None]]:
    """The Redis at `url`, or a throwaway one when none is given; and its process id if it is ours."""
    if url is not None:
        yield url, None
        return
    with own_redis() as own:
        yield own


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate `proc` and wait for it; kill it when it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_SECONDS)


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


def tool_workload(client: Client, agent: str | None = None) -> Workload:
    """claim_task + complete_task, as `agent` (by default the server's AGENTBUS_AGENT)."""
    who = {} if agent is None else {"agent": agent}

    async def claim(_: None) -> Lease:
        data = await call(client, "claim_task", who)
        if data["task"] is None:
            raise RuntimeError(f"claim_task found no task: {data['reason']}")
        return data["task"]["id"], data["lease"]["lease_token"]

    async def complete(lease: Lease) -> None:
        task_id, token = lease
        await call(client, "complete_task", {**who, "task_id": task_id, "lease_token": token})

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
    """What one benchmark run shares: the Redis, the plan, the namespaces to clean up, and what went
    wrong without stopping the run."""

    redis_url: str
    plan: Plan
    redis: Redis
    redis_pid: int | None = None  # when the run started its own redis-server
    namespaces: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # wrong results: the run exits 1
    warnings: list[str] = field(default_factory=list)  # for example a traceback in a server log
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each section

    async def namespace_with_tasks(self, label: str, budget: Budget, workloads: int = 1) -> Settings:
        """Settings of a fresh namespace holding the tasks `workloads` claim+complete workloads can
        consume."""
        namespace = f"bench-{secrets.token_hex(3)}-{label}"
        self.namespaces.append(namespace)
        settings = Settings(redis_url=self.redis_url, namespace=namespace, agent=AGENT)
        await create_tasks(self.redis, settings, workloads * self.plan.tasks_needed(budget))
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


# --- streamable HTTP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    """How to start one HTTP server process: a name for messages, its argv given a port, its env."""

    name: str
    argv: Callable[[int], list[str]]
    env: dict[str, str]


@dataclass
class HttpServer:
    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:  # refused, timed out, or an HTTP error status such as 503
            return False


def noop_http_spec() -> ServerSpec:
    script = str(BENCH_DIR / "noop_server.py")
    return ServerSpec("no-op HTTP server", lambda port: [sys.executable, script, "http", str(port)], {})


def agentbus_http_spec(settings: Settings, name: str, workdir: Path) -> ServerSpec:
    """`agentbus serve --transport http` on the settings' Redis and namespace. The tokens file is a path
    that does not exist, so the server runs without authentication (it listens on loopback only)."""

    def argv(port: int) -> list[str]:
        serve = [sys.executable, "-m", "mcp_agentbus", "serve", "--transport", "http"]
        return [*serve, "--host", "127.0.0.1", "--port", str(port)]

    env = {
        "AGENTBUS_REDIS_URL": settings.redis_url,
        "AGENTBUS_NAMESPACE": settings.namespace,
        "AGENTBUS_AGENT": AGENT,
        "AGENTBUS_LOG_LEVEL": "WARNING",
        "AGENTBUS_TOKENS_FILE": str(workdir / "no-tokens.json"),
    }
    return ServerSpec(f"agentbus HTTP server {name}", argv, env)


def spawn(spec: ServerSpec, log: Path) -> HttpServer:
    """`spec` on a free loopback port; its stdout and stderr go to `log`."""
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), **spec.env}
    with log.open("wb") as out:
        proc = subprocess.Popen(spec.argv(port), stdout=out, stderr=subprocess.STDOUT, env=env)
    return HttpServer(spec, proc, port, log)


async def wait_healthy(server: HttpServer) -> bool:
    """Poll /healthz until it answers 200 (True), the process exits (False), or START_SECONDS pass."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return False
        if server.healthy():
            return True
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{server.spec.name} did not answer /healthz within {START_SECONDS:g} s")


def log_tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@asynccontextmanager
async def http_servers(run: Run, specs: list[ServerSpec], logdir: Path) -> AsyncIterator[list[HttpServer]]:
    """Every spec started at once, each healthy before this yields; all stopped on exit, even when the
    run fails. A port taken between picking it and binding it is picked again (three tries)."""
    servers: list[HttpServer] = []
    try:
        for i, spec in enumerate(specs):
            servers.append(spawn(spec, logdir / f"server-{i}.log"))
        for i, server in enumerate(servers):
            for _ in range(3):
                if await wait_healthy(server):
                    break
                if "address already in use" not in server.log.read_text(errors="replace").lower():
                    code = server.proc.returncode
                    raise RuntimeError(f"{server.spec.name} exited with code {code}:\n{log_tail(server.log)}")
                servers[i] = server = spawn(server.spec, server.log)
            else:
                raise RuntimeError(f"{server.spec.name}: no free port could be bound in three tries")
        yield servers
    finally:
        for server in servers:
            stop(server.proc)
        for server in servers:
            text = server.log.read_text(errors="replace")
            if "Traceback" in text or "Error executing tool" in text:
                run.warnings.append(f"{server.spec.name} logged an error:\n{log_tail(server.log)}")


def http_client(server: HttpServer, mode: str) -> Client:
    """An SDK client over streamable HTTP (its own httpx connection pool) in protocol era `mode`."""
    return Client(streamable_http_client(server.url), mode=mode)


async def http_sections(run: Run) -> list[Row]:
    """The no-op tool and the agentbus tools over streamable HTTP, one client each, both eras. One server
    process of each kind serves both eras; their tasks share one namespace."""
    settings = await run.namespace_with_tasks("http", run.plan.http, workloads=2)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="agentbus-bench-http-") as tmp:
        workdir = Path(tmp)
        specs = [noop_http_spec(), agentbus_http_spec(settings, "(sequential)", workdir)]
        async with http_servers(run, specs, workdir) as (noop_server, agentbus_server):
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


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` so far (Linux /proc); None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def cpu_snapshot(pids: dict[str, int | None]) -> dict[str, float]:
    return {name: t for name, pid in pids.items() if pid is not None and (t := cpu_seconds(pid)) is not None}


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
        async with http_servers(run, specs, workdir) as (a, b), AsyncExitStack() as clients:
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


SWARM_COLUMNS = (
    "section",
    "row",
    "n",
    "p50 ms",
    "p99 ms",
    "pairs/s",
    "calls/s",
    "vs",
    "speedup",
    "CPU cores used",
)
SWARM_NUMERIC_COLUMNS = {2, 3, 4, 5, 6, 8}


def swarm_cells(row: Row) -> tuple[str, ...]:
    return (
        row.section,
        row.name,
        str(row.n),
        f"{row.p50_ms:.3f}",
        f"{row.p99_ms:.3f}",
        f"{row.ops_per_s:,.0f}",
        f"{row.calls_per_s or 0:,.0f}",
        row.vs or "",
        f"{row.speedup:.2f}x" if row.speedup is not None else "",
        " ".join(f"{name} {cores:.2f}" for name, cores in (row.cores or {}).items()),
    )


def table(rows: list[Row]) -> str:
    """The latency rows in one table, the concurrent rows (if any) in a second one."""
    tables = [render(COLUMNS, NUMERIC_COLUMNS, [cells(row) for row in rows if row.agents is None])]
    swarm = [swarm_cells(row) for row in rows if row.agents is not None]
    if swarm:
        tables.append(render(SWARM_COLUMNS, SWARM_NUMERIC_COLUMNS, swarm))
    return "\n\n".join(tables)


def render(columns: tuple[str, ...], numeric: set[int], body: list[tuple[str, ...]]) -> str:
    lines = [columns, *body]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "\n".join(table_line(line, widths, numeric) for line in lines)


def table_line(line: tuple[str, ...], widths: list[int], numeric: set[int]) -> str:
    padded = (
        cell.rjust(width) if i in numeric else cell.ljust(width)
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


async def benchmark(redis_url: str, redis_pid: int | None, plan: Plan) -> tuple[list[Row], Run, str]:
    """Every section in turn; returns the rows, the run (its failures and warnings) and the Redis
    server version."""
    async with redis_client(redis_url) as redis:
        run = Run(redis_url, plan, redis, redis_pid)
        sections: list[tuple[str, Callable[[Run], Awaitable[list[Row]]]]] = [
            ("redis", redis_section),
            ("memory", memory_section),
            ("stdio", stdio_sections),
            ("http", http_sections),
            ("swarm", swarm_section),
        ]
        rows: list[Row] = []
        try:
            info = await redis.info("server")
            for name, section in sections:
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
        rows, run, env["redis_server"] = asyncio.run(benchmark(url, pid, plan))
    env["load_average_at_end"] = os.getloadavg()
    report = {
        "environment": env,
        "plan": asdict(plan),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "section_seconds": run.seconds,
        "failures": run.failures,
        "warnings": run.warnings,
        "rows": [asdict(row) for row in rows],
    }
    print(table(rows))
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
