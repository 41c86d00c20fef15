"""Presence at scale: N agents, each with its own MCP session over streamable HTTP, heartbeating once a
second at their own phase against one agentbus HTTP server process, then against ``--workers 2``, with
and without ``--json-responses``.
Every call is due at a fixed time; its lag is when its answer arrived minus when it was due, so a
server (or client) that falls behind shows as growing lag, not as fewer calls.

The agents speak the protocol with a lean client (raw asyncio streams, HTTP/1.1 keep-alive, one
connection per agent) rather than the SDK's `Client`: that costs about as much CPU per call as the
server, and on two cores it would be the load generator, not the server, that fell behind.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import statistics
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import Figure, Row, make_row
from plan import Run
from processes import HttpServer, agentbus_http_spec, child_pids, cpu_snapshot, http_servers

from mcp_agentbus.redis.keys import Keys
from mcp_agentbus.settings import Settings

PROTOCOL = "2025-11-25"  # the legacy era (initialize + Mcp-Session-Id): what Claude Code speaks
# The goal: 1,000 agents heartbeating against one machine (any number of processes) with lag p99 at most
# 250 ms (issue 18; issue 6 had asked for 100 ms from one process).
LAG_GOAL_MS = 250.0
RATE_GOAL = 0.98  # answers arriving per second: at least this share of N/s
JOINING_AT_ONCE = 32  # agents opening their session at the same time
JOIN_SECONDS = 12.0  # bound on all agents joining
SETTLE_SECONDS = 1.0  # from the last agent joining to the window: every agent beats once in between
CALL_SECONDS = 10.0  # bound on one call
GRACE_SECONDS = 5.0  # after the window, how long the calls still due or in flight may take
TICK_SECONDS = 0.01  # period of the probe of the bench's own event loop
STARTED_SECONDS = 2.0  # after the first of several workers answers /healthz, for the others to start


class CallFailed(Exception):
    """An answer that is not a successful result: an HTTP status, a JSON-RPC error, isError true."""


# --- a lean MCP client ------------------------------------------------------------------------------


@dataclass
class Connection:
    """One HTTP/1.1 keep-alive connection, opened on first use and again if the server has closed it
    (uvicorn closes a connection idle for 5 s)."""

    host: str
    port: int
    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, head: bytes, body: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        if self.streams is None or self.streams[0].at_eof():
            self.close()
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        writer.write(b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body))
        try:
            status, headers = parse_head(await reader.readuntil(b"\r\n\r\n"))
            reply = await read_body(reader, headers)
        except BaseException:  # cut off mid-answer (error, timeout, cancelled): the stream is unusable
            self.close()
            raise
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, headers, reply

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


def parse_head(raw: bytes) -> tuple[int, dict[bytes, bytes]]:
    status_line, *lines = raw[:-4].split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(b" ", 2)[1]), headers


async def read_body(reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> bytes:
    """The body by Content-Length or chunked encoding (uvicorn sends an SSE answer chunked)."""
    if b"content-length" in headers:
        return await reader.readexactly(int(headers[b"content-length"]))
    if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
        raise CallFailed("answer without Content-Length or chunked encoding")
    chunks = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16):
        chunks.append((await reader.readexactly(size + 2))[:-2])
    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any, up to the blank line
        pass
    return b"".join(chunks)


def answer_to(request_id: int, headers: dict[bytes, bytes], body: bytes) -> dict[str, Any]:
    """The JSON-RPC answer to `request_id`: the body itself (JSON), or one of its SSE `data:` lines."""
    if headers.get(b"content-type", b"").startswith(b"application/json"):
        messages = [json.loads(body)]
    else:
        messages = [json.loads(line[5:]) for line in body.splitlines() if line.startswith(b"data:")]
    for message in messages:
        if isinstance(message, dict) and message.get("id") == request_id:
            return message
    raise CallFailed(f"no answer to request {request_id} in {body[:200]!r}")


@dataclass
class Agent:
    """One agent: its own agent id, MCP session (legacy era) and connection."""

    name: str
    connection: Connection
    head: bytes  # the request line and headers up to Content-Length; the session's once it has one
    ids: itertools.count[int] = field(default_factory=itertools.count)

    async def send(self, message: dict[str, Any]) -> tuple[int, dict[bytes, bytes], bytes]:
        return await self.connection.post(self.head, json.dumps(message).encode())

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        request_id = next(self.ids)
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        status, headers, body = await self.send(message)
        if status != 200:
            raise CallFailed(f"{method}: HTTP {status}")
        answer = answer_to(request_id, headers, body)
        if "error" in answer:
            raise CallFailed(f"{method}: JSON-RPC error {answer['error'].get('code')}")
        result: dict[str, Any] = answer["result"]
        return result

    async def heartbeat(self, **arguments: Any) -> dict[str, Any]:
        result = await self.request("tools/call", {"name": "heartbeat", "arguments": arguments})
        if result.get("isError") is not False or "structuredContent" not in result:
            text = str((result.get("content") or [{}])[0].get("text", "")).partition("\n")[0]
            raise CallFailed(f"heartbeat: isError {result.get('isError')}: {text[:200]}")
        data: dict[str, Any] = result["structuredContent"]
        return data

    async def join(self) -> None:
        """initialize, then notifications/initialized, on the session it got; then a first heartbeat
        that registers the agent."""
        client = {"name": "agentbus-bench", "version": "0"}
        params = {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": client}
        request_id = next(self.ids)
        message = {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": params}
        status, headers, body = await self.send(message)
        session = headers.get(b"mcp-session-id")  # none from a stateless server (--stateless)
        if status != 200 or "result" not in answer_to(request_id, headers, body):
            raise CallFailed(f"initialize: HTTP {status}")
        if session is not None:
            self.head += b"Mcp-Session-Id: %s\r\n" % session
        self.head += b"MCP-Protocol-Version: %s\r\n" % PROTOCOL.encode()
        status, _, _ = await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        if status != 202:
            raise CallFailed(f"notifications/initialized: HTTP {status}")
        data = await self.heartbeat(agent=self.name, status="idle", capabilities=["bench"])
        if not data["joined"]:
            raise CallFailed(f"{self.name}'s first heartbeat did not join it: {data}")


def new_agent(server: HttpServer, name: str) -> Agent:
    host = f"127.0.0.1:{server.port}".encode()
    head = b"POST /mcp HTTP/1.1\r\nHost: %s\r\nAccept: application/json, text/event-stream\r\n" % host
    head += b"Content-Type: application/json\r\n"
    return Agent(name, Connection("127.0.0.1", server.port), head)


# --- the load ---------------------------------------------------------------------------------------


@dataclass
class Schedule:
    """When calls are due: agent i of N at `base` + i/N + k seconds (k = 0, 1, ...), from its first slot
    after it joined. The measured window is `rounds` seconds from `start`, set once every agent has
    joined; until then nothing is measured and no agent stops."""

    base: float
    count: int
    rounds: int
    start: float = math.inf

    @property
    def end(self) -> float:
        return self.start + self.rounds

    def first_due(self, i: int, now: float) -> float:
        phase = self.base + i / self.count
        return phase + max(0, math.ceil(now - phase))

    def measured(self, due: float) -> bool:
        return self.start <= due < self.end

    def left(self, due: float) -> int:
        """Measured slots from `due` on, `due` included."""
        return max(0, math.ceil(self.end - due) - max(0, math.ceil(self.start - due)))


@dataclass
class Outcome:
    """What the agents' joins and calls came to. Of the calls, only those due in the window count,
    except in `answered`."""

    joined: list[str] = field(default_factory=list)
    join_failed: Counter[str] = field(default_factory=Counter)  # by reason
    join_seconds: float = 0.0  # from the first agent starting to join to the last one joined
    lags: list[float] = field(default_factory=list)  # seconds, answered calls
    failed: Counter[str] = field(default_factory=Counter)  # calls that failed, by reason
    not_made: int = 0  # calls still to come when the deadline passed
    answered: int = 0  # answers (to calls due at any time) that arrived within the window
    loop_delays: list[float] = field(default_factory=list)  # seconds, from `loop_delay`
    window: float = 0.0  # wall seconds between the two CPU readings
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds over `window`, by process


async def beat(agent: Agent, i: int, schedule: Schedule, out: Outcome) -> None:
    """Heartbeat once a second at agent i's phase until the window ends. One call in flight, as an agent
    makes them: a call due while the previous one is unanswered goes out when that answer arrives."""
    loop = asyncio.get_running_loop()
    due, calling = schedule.first_due(i, loop.time()), False
    try:
        while due < schedule.end:
            await asyncio.sleep(due - loop.time())
            calling = True
            try:
                async with asyncio.timeout(CALL_SECONDS):
                    await agent.heartbeat(agent=agent.name, status="idle")
            except (CallFailed, OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
                if schedule.measured(due):
                    out.failed[f"{type(exc).__name__}: {exc}"] += 1
            else:
                answered = loop.time()
                out.answered += schedule.start <= answered < schedule.end
                if schedule.measured(due):
                    out.lags.append(answered - due)
            calling = False
            due += 1
    except asyncio.CancelledError:  # the deadline: a measured call cut off failed; the rest were not made
        cut = calling and schedule.measured(due)
        if cut:
            out.failed["cut off at the deadline"] += 1
        out.not_made += schedule.left(due) - cut
        raise


async def loop_delay(start: float, end: float, delays: list[float]) -> None:
    """How late the bench's own event loop wakes a task: if the load generator were saturated, this
    would grow (and add to every lag)."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(start - loop.time())
    while (asleep := loop.time()) < end:
        await asyncio.sleep(TICK_SECONDS)
        delays.append(loop.time() - asleep - TICK_SECONDS)


async def heartbeat_load(
    server: HttpServer, names: list[str], rounds: int, pids: dict[str, int | None]
) -> Outcome:
    """The agents join, JOINING_AT_ONCE at a time, and each heartbeats from the moment it has joined;
    once all have joined (or JOIN_SECONDS passed), and SETTLE_SECONDS later, the window of `rounds`
    seconds starts; the CPU of each process in `pids` is read at its start and end. Calls still due or
    in flight GRACE_SECONDS after the window are cut off."""
    loop = asyncio.get_running_loop()
    schedule, out = Schedule(loop.time(), len(names), rounds), Outcome()
    agents = [new_agent(server, name) for name in names]
    gate = asyncio.Semaphore(JOINING_AT_ONCE)
    beats: list[asyncio.Task[None]] = []

    async def join(i: int, agent: Agent) -> None:
        async with gate:
            try:
                await agent.join()
            except (CallFailed, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                out.join_failed[f"{type(exc).__name__}: {exc}"] += 1
                return
        out.joined.append(agent.name)
        beats.append(asyncio.create_task(beat(agent, i, schedule, out)))

    try:
        try:
            async with asyncio.timeout(JOIN_SECONDS), asyncio.TaskGroup() as group:
                for i, agent in enumerate(agents):
                    group.create_task(join(i, agent))
        except TimeoutError:
            late = len(names) - len(out.joined) - out.join_failed.total()
            out.join_failed[f"not joined within {JOIN_SECONDS:g} s"] += late
        out.join_seconds = loop.time() - schedule.base
        schedule.start = loop.time() + SETTLE_SECONDS
        ticker = asyncio.create_task(loop_delay(schedule.start, schedule.end, out.loop_delays))
        await asyncio.sleep(schedule.start - loop.time())
        before, started = cpu_snapshot(pids), loop.time()
        await asyncio.sleep(schedule.end - loop.time())
        after, out.window = cpu_snapshot(pids), loop.time() - started
        out.cpu = {name: after[name] - before[name] for name in before if name in after}
        await ticker
        if beats:
            await asyncio.wait(beats, timeout=GRACE_SECONDS)
    finally:
        for task in beats:
            task.cancel()
        ended = await asyncio.gather(*beats, return_exceptions=True)
        for agent in agents:
            agent.connection.close()
    for result in ended:
        if isinstance(result, Exception):
            raise result
    return out


async def alive_agents(run: Run, settings: Settings, names: list[str]) -> set[str]:
    """Which of `names` the bus holds alive now: presence expiry (score of the agents ZSET) in the
    future, by Redis' clock."""
    seconds, micros = await run.redis.time()
    now_ms = seconds * 1000 + micros // 1000
    scores = await run.redis.zmscore(Keys(settings.namespace).agents, names)
    return {name for name, score in zip(names, scores, strict=True) if score is not None and score > now_ms}


# The servers the agents heartbeat against: one process; one per core; and one per core answering with
# plain JSON bodies, which the README suggests for fleets that heartbeat and claim without waiting.
SERVERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("1 HTTP process", ()),
    ("--workers 2", ("--workers", "2")),
    ("--workers 2 --json-responses", ("--workers", "2", "--json-responses")),
)


async def heartbeats_section(run: Run) -> list[Row]:
    """N agents (the plan's `heartbeat_agents`) join, each on its own session and connection, and
    heartbeat once a second; `heartbeat_seconds` of it are measured, against each of `SERVERS`. After
    each run every agent that joined must still be alive on the bus."""
    rows = []
    for n, (label, flags) in enumerate(SERVERS):
        rows += await heartbeats_against(run, n, label, flags)
    return rows


async def heartbeats_against(run: Run, n: int, label: str, flags: tuple[str, ...]) -> list[Row]:
    count, rounds = run.plan.heartbeat_agents, max(1, round(run.plan.heartbeat_seconds))
    settings = run.namespace(f"heartbeats-{n}")
    names = [f"hb-{i:04d}" for i in range(count)]
    with tempfile.TemporaryDirectory(prefix="agentbus-bench-heartbeats-") as tmp:
        workdir = Path(tmp)
        specs = [agentbus_http_spec(settings, "(heartbeats)", workdir, *flags)]
        async with http_servers(run.warnings, specs, workdir) as (server,):
            pids: dict[str, int | None] = {"bench": os.getpid(), "server": server.proc.pid}
            if "--workers" in flags:
                await asyncio.sleep(STARTED_SECONDS)  # the first worker answered /healthz; let all start
                workers_pids = child_pids(server.proc.pid)
                pids |= {f"server worker {i}": pid for i, pid in enumerate(workers_pids)}
            out = await heartbeat_load(server, names, rounds, pids | {"redis": run.redis_pid})
    alive = await alive_agents(run, settings, names)
    section = f"scale: {count:,} agents heartbeating, {label}"
    report_problems(run, section, alive, out)
    run.figures += heartbeat_figures(section, count, rounds, out, len(alive))
    if len(out.lags) < 2:
        run.failures.append(f"{section}: {len(out.lags)} heartbeat(s) answered in the window, too few")
        return []
    row = make_row(section, "heartbeat lag (answered - due)", out.lags)
    return [replace(row, ops_per_s=out.answered / out.window)]


def report_problems(run: Run, section: str, alive: set[str], out: Outcome) -> None:
    """An agent that joined and is not alive afterwards is a wrong result; failed joins and calls are
    reported (the figures count them)."""
    lost = [name for name in out.joined if name not in alive]
    if lost:
        run.failures.append(f"{section}: {len(lost)} agent(s) joined but are not alive after: {lost[:10]}")
    for what, reasons in (("joins", out.join_failed), ("heartbeats", out.failed)):
        if reasons:
            listed = "; ".join(f"{n} x {reason}" for reason, n in reasons.most_common(5))
            run.warnings.append(f"{section}: {reasons.total()} {what} failed: {listed}")


def heartbeat_figures(section: str, count: int, rounds: int, out: Outcome, alive: int) -> list[Figure]:
    lag_p99 = percentile(out.lags, 99) * 1000
    rate = out.answered / out.window
    failed = out.failed.total()
    cpu_how = f"CPU s / wall s over the {rounds} s window"
    return [
        Figure(
            section, "agents joined", out.join_seconds, "s", "all: initialize, initialized, first heartbeat"
        ),
        Figure(
            section,
            "heartbeat lag p99",
            lag_p99,
            "ms",
            "answer arrived - call due; p50 in the row",
            f"<={LAG_GOAL_MS:g} ms",
            lag_p99 <= LAG_GOAL_MS,
        ),
        Figure(
            section,
            "heartbeats answered",
            rate,
            "calls/s",
            f"answers arriving in the window; target {count:,}/s",
            f">={RATE_GOAL:.0%} of {count:,}/s",
            rate >= RATE_GOAL * count,
        ),
        Figure(section, "heartbeats failed", failed, "calls", "error, isError, timeout", "0", failed == 0),
        Figure(section, "heartbeats not made", out.not_made, "calls", "still to come at the deadline"),
        *(
            Figure(section, f"{name} CPU", used / out.window, "cores", cpu_how)
            for name, used in out.cpu.items()
        ),
        Figure(
            section,
            "server CPU per heartbeat",
            sum(used for name, used in out.cpu.items() if name.startswith("server"))
            / max(out.answered, 1)
            * 1000,
            "ms",
            "server CPU s (all its processes) / heartbeats answered, in the window",
        ),
        Figure(
            section,
            "bench event-loop delay p99",
            percentile(out.loop_delays, 99) * 1000,
            "ms",
            f"a {TICK_SECONDS * 1000:g} ms sleep's overshoot",
        ),
        Figure(
            section, "agents alive after", alive, "agents", "presence in Redis", f"{count:,}", alive == count
        ),
    ]


def percentile(samples: list[float], p: int) -> float:
    if len(samples) < 2:
        return math.nan
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]
