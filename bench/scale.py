"""Scale: claim latency with few and with many tasks queued, the Redis memory completed tasks keep under
the default retention, and the memory of the event log and of inboxes under a sustained stream."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import hiredis
import redis.asyncio as aioredis
from harness import Figure, Goal, Row, Samples, Workload, interleave, make_row
from plan import Run
from processes import AGENT
from workloads import CREATE_ARGS, common_argv, core_workloads, drop_namespace, expect_ok

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.ids import (
    MAX_FANOUT_RECIPIENTS,
    MAX_HELD_TASKS,
    MAX_INPUTS_BYTES,
    MAX_REPLY_BYTES,
    REPLY_ROOM,
)
from mcp_agentbus.redis.connection import Redis
from mcp_agentbus.redis.keys import Keys
from mcp_agentbus.redis.scripts import source
from mcp_agentbus.settings import Settings

DEPTH_SECTION = "scale: claim at depth"
MEMORY_SECTION = "scale: memory"
DEPTH_GOAL = Goal(max_ratio=1.2)  # claim with the deepest queue: at most 1.2x claim with the shallowest
BOUNDED = 1.1  # memory at the end of a stream: at most 1.1x what it was at the first checkpoint at the cap
BATCH = 2_000  # commands per pipelined write
CLAIMERS = 16  # agents that take the claims of a batch in turn (see complete_tasks)
UNLINK_BATCH = 10_000  # keys per UNLINK
REPLY_SECONDS = 30  # bound on the replies of one batch (some 0.1 s)
LOAD_SECONDS = 180  # bound on one fill or stream (a million tasks take about 40 s)
CHECKPOINTS = 10  # memory samples per stream, evenly spaced
READ_EVERY = 50  # messages a reader gets between two reads of its inbox
MESSAGES_PER_CAP = 5  # see messages()
MIN_EVENT_RETENTION = 100  # the smallest the settings allow
BODY = "x" * 100  # the body of every message streamed
READ_BUDGET = MAX_REPLY_BYTES - REPLY_ROOM  # what read_inbox may return, as the core asks
READER, AWAY = "bench-reader", "bench-away"  # the inbox that is read as it fills, and the one never read


@dataclass
class Pipelined:
    """The bus's scripts by plain EVALSHA, arguments laid out as `Store.run` lays them out, packed by
    hiredis and written a batch at a time on one connection of the run's pool; the replies are parsed
    by a hiredis reader of our own. redis-py's pipeline spends about 40 µs of Python per command, and
    its `read_response` about 9 µs per reply, against some 30 µs of Redis for a create_task: on a busy
    2-core machine that Python takes CPU from Redis, and filling a million tasks took a third longer.
    """

    redis: aioredis.Redis
    settings: Settings
    shas: dict[str, str]
    head: tuple[Any, ...] = field(init=False)  # what every command starts with after the script's sha

    def __post_init__(self) -> None:
        keys = Keys(self.settings.namespace).script_keys
        self.head = (len(keys), *keys, *common_argv(self.settings))

    @classmethod
    async def load(cls, redis: Redis, settings: Settings, *scripts: str) -> Pipelined:
        if not isinstance(redis, aioredis.Redis):
            raise RuntimeError("the scale sections need a single Redis server, not a cluster")
        return cls(redis, settings, {name: await redis.script_load(source(name)) for name in scripts})

    def command(self, script: str, *args: str | int) -> bytes:
        packed: bytes = hiredis.pack_command(("EVALSHA", self.shas[script], *self.head, *args))
        return packed

    async def send(self, commands: list[bytes]) -> list[Any]:
        """Write `commands` at once and read their replies; an error reply raises. Reads the connection's
        stream directly (a private attribute of redis-py's connection), so that any URL redis-py
        connects to (TLS, a socket, a password) works."""
        pool = self.redis.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        replies: list[Any] = []
        try:
            async with asyncio.timeout(REPLY_SECONDS):
                await connection.send_packed_command(b"".join(commands), check_health=False)
                reader = hiredis.Reader(encoding="utf-8")
                while len(replies) < len(commands):
                    data = await connection._reader.read(1 << 16)
                    if not data:
                        raise ConnectionError("Redis closed the connection")
                    reader.feed(data)
                    while (reply := reader.gets()) is not False:
                        if isinstance(reply, hiredis.ReplyError):
                            raise RuntimeError(f"Redis answered {reply}")
                        replies.append(reply)
            return replies
        except BaseException:
            await connection.disconnect()  # replies may be left unread on it
            raise
        finally:
            await pool.release(connection)


def send_command(raw: Pipelined, settings: Settings, to: str) -> bytes:
    """send_message of BODY from the bench agent to `to`, with the arguments `Inbox.send` passes."""
    return raw.command(
        "send_message",
        AGENT,
        "",
        to,
        "bench",
        BODY,
        "null",
        "",
        "",
        settings.inbox_max,
        MAX_FANOUT_RECIPIENTS,
    )


def read_command(raw: Pipelined) -> bytes:
    """read_inbox of READER's unread messages (100, the most; not peeking), as `Inbox.read` asks."""
    return raw.command("read_inbox", READER, 100, "0", "", READ_BUDGET)


async def on_two_connections(count: int, work: Callable[[int], Awaitable[None]]) -> None:
    """`work(share)` twice at once, the shares adding up to `count`: Redis runs one connection's batch
    while Python packs or reads the other's."""
    async with asyncio.timeout(LOAD_SECONDS):
        await asyncio.gather(work(count // 2), work(count - count // 2))


async def fill(raw: Pipelined, count: int) -> None:
    """`count` ready tasks, by the create_task script."""
    create = raw.command("create_task", *CREATE_ARGS)

    async def work(share: int) -> None:
        for start in range(0, share, BATCH):
            for reply in await raw.send([create] * min(BATCH, share - start)):
                expect_ok("create_task", reply)

    await on_two_connections(count, work)


async def complete_tasks(raw: Pipelined, count: int) -> None:
    """`count` tasks created, claimed (the best ready one, a fresh lease token each) and completed. The
    claims of a batch go to CLAIMERS agents in turn, each holding fewer than MAX_HELD_TASKS at once."""
    create = raw.command("create_task", *CREATE_ARGS)
    lease_ms = raw.settings.lease_seconds * 1000
    agents = [f"{AGENT}-{i % CLAIMERS}" for i in range(BATCH)]

    async def work(share: int) -> None:
        for start in range(0, share, BATCH):
            n = min(BATCH, share - start)
            for reply in await raw.send([create] * n):
                expect_ok("create_task", reply)
            tokens = [secrets.token_urlsafe(12) for _ in range(n)]
            claims = await raw.send(
                [
                    raw.command("claim_task", a, lease_ms, t, "", "", MAX_HELD_TASKS)
                    for a, t in zip(agents[:n], tokens, strict=True)
                ]
            )
            for reply in claims:
                expect_ok("claim_task", reply)
            completes = [
                raw.command("complete_task", a, claim[1], token, "null", "", MAX_INPUTS_BYTES)
                for a, claim, token in zip(agents[:n], claims, tokens, strict=True)
            ]
            for reply in await raw.send(completes):
                expect_ok("complete_task", reply)

    await on_two_connections(count, work)


async def server_memory(redis: Redis) -> int:
    """INFO used_memory less what the clients hold now (their buffers come and go with each batch): the
    sum of CLIENT LIST tot-mem, which is current, where INFO's mem_clients_normal lags behind."""
    info = await redis.info("memory")
    clients = await redis.client_list()
    return int(info["used_memory"]) - sum(int(client.get("tot-mem", 0)) for client in clients)


async def drop(run: Run, namespace: str) -> None:
    """Delete every key of `namespace`: its task hashes by name (t-1 up to the task counter), UNLINK_BATCH
    at a time, then the rest by `drop_namespace`, whose SCAN of a keyspace holding a million keys would
    take seconds."""
    keys = Keys(namespace)
    last = int(await run.redis.hget(keys.counters, "task") or 0)
    for start in range(1, last + 1, UNLINK_BATCH):
        await run.redis.unlink(
            *(keys.task(f"t-{n}") for n in range(start, min(last + 1, start + UNLINK_BATCH)))
        )
    await drop_namespace(run.redis, namespace)


# --- claim at depth ---------------------------------------------------------------------------------


async def fill_queue(run: Run, settings: Settings, depth: int, report: bool) -> None:
    """`depth` ready tasks in the namespace of `settings`; if `report`, the fill rate and the memory
    they take are figures."""
    raw = await Pipelined.load(run.redis, settings, "create_task")
    before, started = await server_memory(run.redis), time.perf_counter()
    await fill(raw, depth)
    seconds, added = time.perf_counter() - started, await server_memory(run.redis) - before
    if report:
        how = f"{depth:,} tasks by create_task, EVALSHA pipelined {BATCH:,} deep on 2 connections"
        run.figures.append(Figure(DEPTH_SECTION, "fill rate", depth / seconds, "tasks/s", how))
        how = f"INFO used_memory less client memory, before and after the fill of {depth:,} tasks"
        run.figures.append(Figure(DEPTH_SECTION, "Redis memory per ready task", added / depth, "bytes", how))


def depth_workload(bus: AgentBus, depth: int) -> Workload:
    """claim, complete, then create one task: the next claim again finds `depth` tasks queued."""
    claim, complete = next(w for w in core_workloads(bus) if w.name == "tasks").steps

    async def create(_: None) -> None:
        await bus.tasks.create(AGENT, title="bench task")

    return Workload(f"{depth:,} queued", [claim, complete, create], ("claim", "complete", "create"))


async def depth_section(run: Run) -> list[Row]:
    """For each depth a namespace with that many ready tasks; claim+complete+create through the core
    API, the depths interleaved in rounds, each compared with the shallowest. Every namespace is
    dropped when the section ends: the end-of-run cleanup scans the whole keyspace once per namespace."""
    plan = run.plan
    queues = [run.namespace(f"depth-{depth}") for depth in plan.depths]
    try:
        for settings, depth in zip(queues, plan.depths, strict=True):
            await fill_queue(run, settings, depth, report=depth == plan.depths[-1])
        async with AsyncExitStack() as stack:
            workloads = [
                depth_workload(await stack.enter_async_context(AgentBus.open(settings, reaper=False)), depth)
                for settings, depth in zip(queues, plan.depths, strict=True)
            ]
            samples = await interleave(workloads, plan.depth, plan.warmup, plan.rounds)
        for settings, depth in zip(queues, plan.depths, strict=True):
            await check_depth(run, settings, depth)
    finally:
        for settings in reversed(queues):  # the deepest first: the others' SCANs are then quick
            await drop(run, settings.namespace)
    return depth_rows(workloads, samples, plan.depths)


async def check_depth(run: Run, settings: Settings, depth: int) -> None:
    prefix = Keys(settings.namespace).prefix
    ready = await run.redis.zcard(f"{prefix}ready:any")
    leased = await run.redis.zcard(f"{prefix}leases")
    if ready != depth or leased != 0:
        run.failures.append(
            f"depth {depth:,}: {ready:,} tasks ready (expected {depth:,}) and {leased} leased (expected 0)"
        )


def depth_rows(workloads: list[Workload], samples: list[Samples], depths: tuple[int, ...]) -> list[Row]:
    """One row per step and depth; the deeper ones compared with the shallowest (the first), the goal on
    the deepest claim (the last)."""
    rows: list[Row] = []
    floors: dict[str, Row] = {}
    for workload, depth, series in zip(workloads, depths, samples, strict=True):
        for step, times in zip(workload.step_names, series, strict=True):
            goal = DEPTH_GOAL if step == "claim" and depth == depths[-1] else None
            row = make_row(
                DEPTH_SECTION, f"AgentBus.tasks {step}, {workload.name}", times, floors.get(step), goal=goal
            )
            floors.setdefault(step, row)
            rows.append(row)
    return rows


# --- memory -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """Memory at one checkpoint of a stream."""

    sent: int  # events or messages sent so far
    added: int  # Redis memory added since the stream began (server_memory)
    keys: int  # MEMORY USAGE of the keys that must stay bounded
    key_count: int  # keys added since the stream began (DBSIZE)


async def stream(
    run: Run, count: int, send: Callable[[int], Awaitable[None]], bounded: list[str]
) -> list[Sample]:
    """`send(n)` in CHECKPOINTS parts adding up to `count`, memory sampled after each part."""
    base_memory, base_keys = await server_memory(run.redis), await run.redis.dbsize()
    samples: list[Sample] = []
    sent = 0
    async with asyncio.timeout(LOAD_SECONDS):
        for checkpoint in range(1, CHECKPOINTS + 1):
            part = count * checkpoint // CHECKPOINTS - sent
            await send(part)
            sent += part
            usage = [await run.redis.memory_usage(key, samples=0) or 0 for key in bounded]
            added = await server_memory(run.redis) - base_memory
            samples.append(Sample(sent, added, sum(usage), await run.redis.dbsize() - base_keys))
    return samples


def bounded_figures(run: Run, name: str, samples: list[Sample], cap: int, what: str, how: str) -> Sample:
    """The memory the stream added at the first checkpoint at `cap` items and at the end, and whether
    the end stays within BOUNDED of it; the same ratio for the keys that must stay bounded (`what`).
    Returns the checkpoint at the cap."""
    plateau, end = next(s for s in samples if s.sent >= cap), samples[-1]
    goal = f"<={BOUNDED}x (bounded)"
    run.figures += [
        Figure(
            MEMORY_SECTION,
            f"{name}: memory at the cap",
            plateau.added,
            "bytes",
            f"Redis memory added (INFO used_memory less client memory) by {plateau.sent:,} {how}",
        ),
        Figure(MEMORY_SECTION, f"{name}: memory at the end", end.added, "bytes", f"by {end.sent:,}"),
        Figure(
            MEMORY_SECTION,
            f"{name}: memory end / at the cap",
            end.added / plateau.added,
            "x",
            goal=goal,
            goal_met=end.added <= BOUNDED * plateau.added,
        ),
        Figure(
            MEMORY_SECTION,
            f"{name}: {what} end / at the cap",
            end.keys / plateau.keys,
            "x",
            f"MEMORY USAGE: {plateau.keys:,} then {end.keys:,} bytes",
            goal=goal,
            goal_met=end.keys <= BOUNDED * plateau.keys,
        ),
    ]
    return plateau


async def retention_section(run: Run) -> list[Row]:
    """The memory of sustained streams (events, messages read as they come, messages never read), then
    of completed tasks. Nothing is dropped before the end, so that no shrinking of Redis' own tables
    falls inside a measurement."""
    namespaces = len(run.namespaces)
    try:
        await warm_up(run)
        await event_stream(run)
        await inbox_stream(run)
        await unread_stream(run)
        await retained_tasks(run)
    finally:
        for namespace in run.namespaces[namespaces:]:
            await drop(run, namespace)
    return []


async def warm_up(run: Run) -> None:
    """Each script the streams run, once, in a namespace of its own: a fresh Redis server allocates some
    100 KB on the first calls (a stream, the Lua client's buffers), which would count as the first
    stream's."""
    settings = run.namespace("warm-up")
    raw = await Pipelined.load(run.redis, settings, "publish_event", "send_message", "read_inbox")
    publish = raw.command("publish_event", AGENT, "", "bench.tick", '{"n": 1}')
    send = send_command(raw, settings, READER)
    for reply in await raw.send([publish, send, read_command(raw)]):
        expect_ok("warm-up", reply)
    await server_memory(run.redis)


def default(name: str) -> int:
    value: int = Settings.model_fields[name].default
    return value


def described(settings: Settings, name: str) -> str:
    """The setting `name` and its value, and the default when it is not that."""
    value = getattr(settings, name)
    return f"{name} {value:,}" + ("" if value == default(name) else f", not the default {default(name):,}")


def inbox_settings(run: Run, label: str) -> Settings:
    """A namespace with the default inbox_max, or a smaller one when the plan's stream is short (quick);
    and the smallest event_retention, so that the event log (measured on its own) is at its cap after the
    first hundred messages and the growth measured is the inbox's."""
    inbox_max = max(10, min(default("inbox_max"), run.plan.stream // 10))
    return run.namespace(label, inbox_max=inbox_max, event_retention=MIN_EVENT_RETENTION)


def messages(run: Run, settings: Settings) -> int:
    """Messages streamed into an inbox: MESSAGES_PER_CAP x inbox_max (at most the plan's stream). Once an
    inbox holds inbox_max messages, every send also trims the oldest read one, and that costs Redis about
    200 µs (trim_read reads 100 whole entries to delete one): the plan's whole stream would take 10 s."""
    return min(run.plan.stream, MESSAGES_PER_CAP * settings.inbox_max)


async def event_stream(run: Run) -> None:
    """Events published: the log must stay at event_retention (the default, or a fifth of the plan's
    stream when that is smaller: quick)."""
    retention = max(MIN_EVENT_RETENTION, min(default("event_retention"), run.plan.stream // 5))
    settings = run.namespace("events", event_retention=retention)
    raw = await Pipelined.load(run.redis, settings, "publish_event")
    publish = raw.command("publish_event", AGENT, "", "bench.tick", '{"n": 1}')

    async def send(count: int) -> None:
        for start in range(0, count, BATCH):
            for reply in await raw.send([publish] * min(BATCH, count - start)):
                expect_ok("publish_event", reply)

    samples = await stream(run, run.plan.stream, send, [Keys(settings.namespace).events])
    how = f"publish_event ({described(settings, 'event_retention')})"
    bounded_figures(run, "event stream", samples, retention, "event log", how)


async def inbox_stream(run: Run) -> None:
    """Messages to one agent that reads its inbox every READ_EVERY messages, as a worker would."""
    settings = inbox_settings(run, "inbox")
    raw = await Pipelined.load(run.redis, settings, "send_message", "read_inbox")
    message = send_command(raw, settings, READER)
    read = read_command(raw)  # limit 100 (the most), not peeking
    reads = BATCH // READ_EVERY  # per write, each after its READ_EVERY messages

    async def send(count: int) -> None:
        sizes = [min(READ_EVERY, count - n) for n in range(0, count, READ_EVERY)]  # messages per read
        for start in range(0, len(sizes), reads):
            group = sizes[start : start + reads]
            replies = iter(await raw.send([c for size in group for c in [*[message] * size, read]]))
            for size in group:
                for _ in range(size):
                    expect_ok("send_message", next(replies))
                _, found, unread, _ = next(replies)
                if len(found) != size or unread != 0:
                    raise RuntimeError(f"read_inbox got {len(found)} of {size} messages and left {unread}")

    keys = Keys(settings.namespace)
    inbox = [f"{keys.prefix}{family}:{READER}" for family in ("inbox", "unread", "read")]
    count = messages(run, settings)
    samples = await stream(run, count, send, inbox)
    how = f"send_message, read every {READ_EVERY} ({described(settings, 'inbox_max')})"
    plateau = bounded_figures(run, "inbox read", samples, settings.inbox_max, "inbox keys", how)
    end = samples[-1]
    sent = end.sent - plateau.sent
    run.figures.append(
        Figure(
            MEMORY_SECTION,
            "inbox read: memory added per message",
            (end.added - plateau.added) / sent,
            "bytes",
            f"INFO, from {plateau.sent:,} to {end.sent:,} messages; DBSIZE grew "
            f"{(end.key_count - plateau.key_count) / sent:.2f} keys per message",
        )
    )


async def unread_stream(run: Run) -> None:
    """Messages to one agent that never reads: the inbox must take inbox_max of them and refuse the
    rest, saying so, rather than grow or drop an unread one."""
    settings = inbox_settings(run, "unread")
    raw = await Pipelined.load(run.redis, settings, "send_message")
    message = send_command(raw, settings, AWAY)
    outcomes = {"ok": 0, "inbox_full": 0}

    async def send(count: int) -> None:
        for start in range(0, count, BATCH):
            for reply in await raw.send([message] * min(BATCH, count - start)):
                if reply[0] not in outcomes:
                    raise RuntimeError(f"send_message answered {reply!r}")
                outcomes[reply[0]] += 1

    prefix = Keys(settings.namespace).prefix
    inbox = [f"{prefix}inbox:{AWAY}", f"{prefix}unread:{AWAY}"]
    samples = await stream(run, messages(run, settings), send, inbox)
    how = f"send_message, never read ({described(settings, 'inbox_max')})"
    bounded_figures(run, "inbox unread", samples, settings.inbox_max, "inbox keys", how)
    kept = await run.redis.xlen(inbox[0])
    expected = {"ok": settings.inbox_max, "inbox_full": messages(run, settings) - settings.inbox_max}
    if outcomes != expected or kept != settings.inbox_max:
        run.failures.append(
            f"inbox never read: {outcomes} sends answered (expected {expected}), "
            f"{kept:,} messages kept (expected inbox_max, {settings.inbox_max:,})"
        )


async def retained_tasks(run: Run) -> None:
    """The memory completed tasks keep: under the default retention a finished task's hash stays for
    retention_seconds (a day), so it grows with every task completed in a day, apart from the event log,
    which is capped. Per 100k is per task, less the log, x 100k, plus the log."""
    settings = run.namespace("retained")
    raw = await Pipelined.load(run.redis, settings, "create_task", "claim_task", "complete_task")
    count = run.plan.retained_tasks
    before = await server_memory(run.redis)
    await complete_tasks(raw, count)
    added = await server_memory(run.redis) - before
    keys = Keys(settings.namespace)
    sample = [keys.task(f"t-{n}") for n in range(1, count + 1, max(1, count // 100))]
    task_bytes = [await run.redis.memory_usage(key, samples=0) or 0 for key in sample]
    log = await run.redis.memory_usage(keys.events, samples=0) or 0
    kept = await run.redis.xlen(keys.events)
    per_task = (added - log) / count
    how = (
        f"INFO used_memory less client memory, after - before {count:,} tasks created, claimed and "
        f"completed, less the event log ({described(settings, 'retention_seconds')})"
    )
    run.figures += [
        Figure(MEMORY_SECTION, "completed task: Redis memory per task", per_task, "bytes", how),
        Figure(
            MEMORY_SECTION,
            "completed tasks: Redis memory per 100k",
            (per_task * 100_000 + log) / 1e6,
            "MB",
            "100,000 x the above, plus the event log",
        ),
        Figure(
            MEMORY_SECTION,
            "completed task: its hash",
            sum(task_bytes) / len(task_bytes),
            "bytes",
            f"MEMORY USAGE of {len(sample)} task hashes (key, value and entry; not the expiry entry)",
        ),
        Figure(
            MEMORY_SECTION,
            "completed tasks: the event log",
            log / 1e6,
            "MB",
            f"MEMORY USAGE: {kept:,} events of {3 * count:,} ({described(settings, 'event_retention')})",
        ),
    ]
