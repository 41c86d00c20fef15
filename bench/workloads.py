"""The operations measured: PING, the raw scripts by EVALSHA, the core API and MCP tool calls; and the
tasks they consume."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from harness import Workload
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from processes import AGENT, HttpServer

from mcp_agentbus.bus import AgentBus
from mcp_agentbus.connection import Redis, connect
from mcp_agentbus.keys import Keys
from mcp_agentbus.scripts import source
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


def http_client(server: HttpServer, mode: str) -> Client:
    """An SDK client over streamable HTTP (its own httpx connection pool) in protocol era `mode`."""
    return Client(streamable_http_client(server.url), mode=mode)
