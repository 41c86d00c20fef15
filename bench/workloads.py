"""The operations measured: PING, the raw scripts by EVALSHA, the core API and MCP tool calls; and the
tasks they consume."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from harness import Step, Workload
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from processes import AGENT, HttpServer

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.events import SCAN_FACTOR
from mcp_agentbus.ids import (
    MAX_DEPENDENTS,
    MAX_FANOUT_RECIPIENTS,
    MAX_HELD_LOCKS,
    MAX_HELD_TASKS,
    MAX_INPUTS_BYTES,
    MAX_REPLY_BYTES,
    MAX_WORKFLOW_TASKS,
    REPLY_ROOM,
)
from mcp_agentbus.redis.connection import Redis, connect
from mcp_agentbus.redis.keys import Keys
from mcp_agentbus.redis.scripts import source
from mcp_agentbus.redis.store import common_argv as store_common_argv
from mcp_agentbus.settings import Settings

Lease = tuple[str, str]  # (task_id, lease_token), from claim to complete


@asynccontextmanager
async def redis_client(url: str) -> AsyncIterator[Redis]:
    """A client configured exactly as the bus configures its own."""
    redis = connect(url)
    try:
        yield redis
    finally:
        await redis.aclose()


# What create_task takes last, as the core API passes it: max tasks per workflow, dependents per task,
# inputs bytes per claim; then no assignee.
GRAPH_BOUNDS = (MAX_WORKFLOW_TASKS, MAX_DEPENDENTS, MAX_INPUTS_BYTES, "")


def common_argv(settings: Settings) -> list[Any]:
    """The ARGV every script gets first, as `Store.run` passes it (no notices wanted)."""
    return [*store_common_argv(settings), ""]


# create_task's ARGV after the common ones: a ready task for any capability, priority normal, no
# workflow, 3 attempts, no delay; then the bounds the core API passes, and no assignee.
CREATE_ARGS = (AGENT, "", "bench task", "", "any", "normal", "null", "", "", 3, 0, *GRAPH_BOUNDS)


async def create_tasks(redis: Redis, settings: Settings, count: int) -> None:
    """`count` ready tasks in the settings' namespace, made by the bus's own create_task script."""
    sha = await redis.script_load(source("create_task"))
    keys = Keys(settings.namespace).script_keys
    args = [*common_argv(settings), *CREATE_ARGS]
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
# Every operation comes in three implementations, measured against each other: the raw scripts (the
# floor of the core API), the core API, and MCP tool calls. Each is a workload of one or two steps:
# tasks (claim, complete), messages (send, read), locks (acquire, release), heartbeat, events
# (publish, read). The step names say what each row is.

OPERATIONS = ("tasks", "messages", "locks", "heartbeat", "events", "state", "control")
STEPS = {
    "tasks": ("claim", "complete"),
    "messages": ("send", "read"),
    "locks": ("acquire", "release"),
    "heartbeat": ("heartbeat",),
    "events": ("publish", "read"),
    "state": ("set", "get"),
    "control": ("create", "cancel"),
}
RESOURCE = "bench/file.py"
TOPIC = "bench.ping"
STATE_KEY = "bench/counter"


def operations(*steps: Step) -> list[Workload]:
    """The seven operations (OPERATIONS) from their thirteen steps, in that order."""
    out, rest = [], list(steps)
    for name in OPERATIONS:
        count = len(STEPS[name])
        out.append(Workload(name, rest[:count], STEPS[name]))
        rest = rest[count:]
    return out


def ping_workload(redis: Redis) -> Workload:
    async def ping(_: None) -> None:
        await redis.ping()

    return Workload("ping", [ping], ("PING",))


def just_before(event_id: str) -> str:
    """The stream id right before `event_id`: a cursor from which reading starts at that event, so that
    events other workloads wrote in between never come first."""
    ms, seq = (int(part) for part in event_id.split("-"))
    return f"{ms}-{seq - 1}" if seq else f"{ms - 1}-{2**64 - 1}"


class RawScripts:
    """The bus's scripts by plain EVALSHA, with the keys and leading ARGV `Store.run` passes (no notices
    wanted): the core API without its Python."""

    def __init__(self, redis: Redis, settings: Settings, caller: str = "") -> None:
        """With `caller` (``agent,stay_ms``), each script also renews that agent's presence and returns
        its notices (dropped from the reply, as `Store.run` takes them), as for a tool call."""
        self.redis = redis
        self.settings = settings
        self._keys = Keys(settings.namespace).script_keys
        self._common = [*store_common_argv(settings), caller]
        self._notices = bool(caller)
        self._shas: dict[str, str] = {}

    async def __call__(self, script: str, *args: Any) -> list[Any]:
        sha = self._shas.get(script)
        if sha is None:
            sha = self._shas[script] = await self.redis.script_load(source(script))
        reply: list[Any] = await self.redis.evalsha(sha, len(self._keys), *self._keys, *self._common, *args)
        if self._notices:
            reply.pop()
        expect_ok(script, reply)
        return reply


def raw_workloads(raw: RawScripts) -> list[Workload]:
    """Each operation by its scripts, with the arguments the core API passes."""
    lease_ms = raw.settings.lease_seconds * 1000

    async def claim(_: None) -> Lease:
        token = secrets.token_urlsafe(12)
        reply = await raw(
            "claim_task", AGENT, lease_ms, token, "", "", MAX_HELD_TASKS
        )  # the best, any capability
        return reply[1], token

    async def complete(lease: Lease) -> None:
        await raw("complete_task", AGENT, *lease, "null", "", MAX_INPUTS_BYTES)  # result null, no summary

    async def send(_: None) -> None:
        await raw(
            "send_message",
            AGENT,
            "",
            AGENT,
            "bench",
            "ping",
            "null",
            "",
            "",
            raw.settings.inbox_max,
            MAX_FANOUT_RECIPIENTS,
        )

    async def read(_: None) -> None:
        _, found, _, _ = await raw("read_inbox", AGENT, 1, "0", "", MAX_REPLY_BYTES - REPLY_ROOM)
        if len(found) != 1:
            raise RuntimeError(f"read_inbox found {found}")

    async def acquire(_: None) -> str:
        token = secrets.token_urlsafe(12)
        await raw("acquire_lock", AGENT, RESOURCE, 60_000, token, "0", 1_000, MAX_HELD_LOCKS)
        return token

    async def release(token: str) -> None:
        await raw("release_lock", AGENT, RESOURCE, token)

    async def heartbeat(_: None) -> None:
        await raw("heartbeat", AGENT, "idle", "", "0", "", 60_000, "", "", "")  # no progress

    async def publish(_: None) -> str:
        return str((await raw("publish_event", AGENT, "", TOPIC, "null"))[1])

    async def read_event(event_id: str) -> None:
        # As the core reads with one topic and limit 1: a batch of SCAN_FACTOR, checking for trimming.
        reply = await raw("read_events", just_before(event_id), SCAN_FACTOR, "1")
        if [entry[0] for entry in reply[2][:1]] != [event_id]:
            raise RuntimeError(f"read_events answered {reply}, expected {event_id} first")

    async def set_value(_: None) -> int:
        bounds = (raw.settings.state_keys_max, raw.settings.state_keys_max_per_owner)
        reply = await raw("set_state", AGENT, "", STATE_KEY, "increment", "1", "", "", *bounds)
        return int(reply[2])

    async def get_value(version: int) -> None:
        reply = await raw("read_state", STATE_KEY)
        if reply[3] is None or int(reply[3]) != version:
            raise RuntimeError(f"read_state read version {reply[3]}, expected {version}")

    async def create(_: None) -> str:
        return str(json.loads((await raw("create_task", *CREATE_ARGS))[1])["task_id"])

    async def cancel(task_id: str) -> None:
        await raw("cancel_task", AGENT, "", task_id, "", "bench", "bench")

    first = (claim, complete, send, read, acquire, release, heartbeat, publish, read_event)
    return operations(*first, set_value, get_value, create, cancel)


def core_workloads(bus: AgentBus, agent: str = AGENT) -> list[Workload]:
    """Each operation through the core Python API, as `agent`."""

    async def claim(_: None) -> Lease:
        result = await bus.tasks.claim(agent)
        if result.task is None or result.lease is None:
            raise RuntimeError(f"claim found no task: {result.reason}")
        return result.task.id, result.lease.lease_token

    async def complete(lease: Lease) -> None:
        await bus.tasks.complete(agent, *lease)

    async def send(_: None) -> str:
        return (await bus.inbox.send(agent, agent, "ping", subject="bench")).message_id

    async def read(message_id: str) -> None:
        found = (await bus.inbox.read(agent, limit=1)).messages
        if [m.id for m in found] != [message_id]:
            raise RuntimeError(f"read_inbox returned {found}, expected {message_id}")

    async def acquire(_: None) -> str:
        result = await bus.locks.acquire(agent, RESOURCE)
        if result.lock_token is None:
            raise RuntimeError(f"acquire refused: {result}")
        return result.lock_token

    async def release(token: str) -> None:
        await bus.locks.release(agent, RESOURCE, token)

    async def heartbeat(_: None) -> None:
        await bus.presence.heartbeat(agent)

    async def publish(_: None) -> str:
        return (await bus.events.publish(agent, TOPIC)).event_id

    async def read_event(event_id: str) -> None:
        found = (await bus.events.read(topics=[TOPIC], after=just_before(event_id), limit=1)).events
        if [e.id for e in found] != [event_id]:
            raise RuntimeError(f"read_events returned {found}, expected {event_id}")

    async def set_value(_: None) -> int:
        version = (await bus.state.set(agent, STATE_KEY, increment=1)).version
        if version is None:
            raise RuntimeError("set_state wrote nothing")
        return version

    async def get_value(version: int) -> None:
        found = (await bus.state.get(STATE_KEY)).entries
        if [e.version for e in found] != [version]:
            raise RuntimeError(f"get_state returned {found}, expected version {version}")

    async def create(_: None) -> str:
        return (await bus.tasks.create(agent, title="bench task")).task_id

    async def cancel(task_id: str) -> None:
        cancelled = (await bus.control.cancel(agent, task_id=task_id, reason="bench")).cancelled
        if cancelled != [task_id]:
            raise RuntimeError(f"cancel_task cancelled {cancelled}, expected {task_id}")

    first = (claim, complete, send, read, acquire, release, heartbeat, publish, read_event)
    return operations(*first, set_value, get_value, create, cancel)


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    if result.is_error or result.structured_content is None:
        raise RuntimeError(f"{tool} failed: {result.content}")
    data: dict[str, Any] = result.structured_content
    return data


def noop_workload(client: Client) -> Workload:
    async def noop(_: None) -> None:
        await call(client, "noop", {})

    return Workload("noop", [noop], ("no-op tool",))


def ping_tool_workload(client: Client) -> Workload:
    """The no-op server's tool that makes one Redis PING (noop_server.py, with NOOP_REDIS_URL)."""

    async def ping(_: None) -> None:
        await call(client, "ping", {})

    return Workload("ping", [ping], ("no-op tool, one PING",))


def tool_workloads(client: Client, agent: str | None = None) -> list[Workload]:
    """Each operation by MCP tool calls, as `agent` (by default the server's AGENTBUS_AGENT)."""
    who = {} if agent is None else {"agent": agent}

    async def claim(_: None) -> Lease:
        data = await call(client, "claim_task", who)
        if data["task"] is None:
            raise RuntimeError(f"claim_task found no task: {data['reason']}")
        return data["task"]["id"], data["lease"]["lease_token"]

    async def complete(lease: Lease) -> None:
        task_id, token = lease
        await call(client, "complete_task", {**who, "task_id": task_id, "lease_token": token})

    async def send(_: None) -> str:
        to = agent or AGENT
        data = await call(client, "send_message", {**who, "to": to, "body": "ping", "subject": "bench"})
        return str(data["message_id"])

    async def read(message_id: str) -> None:
        data = await call(client, "read_inbox", {**who, "limit": 1})
        if [m["id"] for m in data["messages"]] != [message_id]:
            raise RuntimeError(f"read_inbox returned {data['messages']}, expected {message_id}")

    async def acquire(_: None) -> str:
        data = await call(client, "acquire_lock", {**who, "resource": RESOURCE})
        if not data["acquired"]:
            raise RuntimeError(f"acquire_lock refused: {data}")
        return str(data["lock_token"])

    async def release(token: str) -> None:
        await call(client, "release_lock", {**who, "resource": RESOURCE, "lock_token": token})

    async def heartbeat(_: None) -> None:
        await call(client, "heartbeat", who)

    async def publish(_: None) -> str:
        return str((await call(client, "publish_event", {**who, "topic": TOPIC}))["event_id"])

    async def read_event(event_id: str) -> None:
        arguments = {"topics": [TOPIC], "after": just_before(event_id), "limit": 1}
        data = await call(client, "read_events", arguments)
        if [e["id"] for e in data["events"]] != [event_id]:
            raise RuntimeError(f"read_events returned {data['events']}, expected {event_id}")

    async def set_value(_: None) -> int:
        return int((await call(client, "set_state", {**who, "key": STATE_KEY, "increment": 1}))["version"])

    async def get_value(version: int) -> None:
        data = await call(client, "get_state", {**who, "key": STATE_KEY})
        if [e["version"] for e in data["entries"]] != [version]:
            raise RuntimeError(f"get_state returned {data['entries']}, expected version {version}")

    async def create(_: None) -> str:
        return str((await call(client, "create_task", {**who, "title": "bench task"}))["task_id"])

    async def cancel(task_id: str) -> None:
        data = await call(client, "cancel_task", {**who, "task_id": task_id, "reason": "bench"})
        if data["cancelled"] != [task_id]:
            raise RuntimeError(f"cancel_task cancelled {data['cancelled']}, expected {task_id}")

    first = (claim, complete, send, read, acquire, release, heartbeat, publish, read_event)
    return operations(*first, set_value, get_value, create, cancel)


def http_client(server: HttpServer, mode: str) -> Client:
    """An SDK client over streamable HTTP (its own httpx connection pool) in protocol era `mode`."""
    return Client(streamable_http_client(server.url), mode=mode)
