"""Helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from datetime import datetime
from typing import Any, TypeVar

import anyio
import pytest
import redis.asyncio as redis

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.workflow_views import TaskView
from mcp_agentbus.redis.keys import Keys
from mcp_agentbus.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (all held open at once while they are picked)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


# Module-scoped MCP fixtures run once per backend and era.
BACKENDS_AND_ERAS = [("memory", "auto"), ("memory", "legacy"), ("redis", "auto"), ("redis", "legacy")]


# A module whose bus tests should also run on the session's 3-master Redis Cluster opts in with
# `pytestmark = [pytest.mark.anyio, ALSO_ON_CLUSTER]`: it re-parametrizes the `redis_url` fixture
# (conftest.py), so every test that uses `redis_url`, `settings` or `bus` runs on all three backends.
ALSO_ON_CLUSTER = pytest.mark.parametrize("redis_url", ["memory", "redis", "cluster"], indirect=True)


def backend_url(backend: str, real_redis_url: str | None) -> str:
    """A fresh embedded store (``memory``) or the session's real redis-server (``redis``)."""
    if backend == "memory":
        return f"memory://{uuid.uuid4().hex}"
    if real_redis_url is None:
        pytest.skip("redis-server not installed")
    return real_redis_url


def fresh_settings(redis_url: str, **overrides: Any) -> Settings:
    """Settings for a fresh namespace, with short backoffs and a fast reaper so tests stay quick."""
    defaults: dict[str, Any] = {
        "namespace": f"test-{uuid.uuid4().hex[:12]}",
        "agent": "tester",
        "retry_backoff_seconds": 0.05,
        "retry_backoff_max_seconds": 0.2,
        "reaper_interval_seconds": 0.1,
        "max_wait_seconds": 5,
    }
    return Settings(redis_url=redis_url, **(defaults | overrides))


async def view_of(bus: AgentBus, workflow_id: str, task_id: str) -> TaskView:
    """The task as get_workflow shows it."""
    got = await bus.workflows.get(workflow_id)
    assert got.workflow is not None
    return next(t for t in got.workflow.tasks if t.id == task_id)


async def wait_for_state(bus: AgentBus, workflow_id: str, task_id: str, state: str) -> TaskView:
    """Poll get_workflow (bounded) until the task is in `state`."""
    with anyio.fail_after(5):
        while True:
            view = await view_of(bus, workflow_id, task_id)
            if view.state == state:
                return view
            await anyio.sleep(0.02)


WAIT_BOUND = 5  # seconds: bound on any one poll below; each ends far sooner


async def until_task_state(bus: AgentBus, task_id: str, state: str) -> None:
    """Poll the task's record (bounded) until it is in `state`: for tasks outside a workflow, or work
    the reaper finishes."""
    with anyio.fail_after(WAIT_BOUND):
        while True:
            if await bus.redis.hget(bus.store.keys.task(task_id), "state") == state:
                return
            await anyio.sleep(0.02)


SETTLE_BOUND = 30.0  # seconds for a wait in a server process to begin, or to end (busy CI machine)


async def until_listening(redis_url: str, namespace: str, agent: str, listening: bool) -> None:
    """Until a server process listens (or no longer listens) for news of `agent`: it does while a call
    of that agent waits (core/wakeups.py)."""
    channel = Keys(namespace).wake(f"message:{agent}")
    async with redis.Redis.from_url(redis_url) as client:
        with anyio.fail_after(SETTLE_BOUND):
            # Redis counts a channel's subscribers: there is no event to wait on
            while (dict(await client.pubsub_numsub(channel))[channel.encode()] > 0) != listening:  # noqa: ASYNC110
                await anyio.sleep(0.05)


def ms_of(iso_text: str | None) -> int:
    """An ISO timestamp from a result as Redis milliseconds."""
    assert iso_text is not None
    return round(datetime.fromisoformat(iso_text).timestamp() * 1000)


async def redis_ms(bus: AgentBus) -> float:
    """The Redis server clock, in milliseconds (with microseconds)."""
    seconds, micros = await bus.redis.time()
    return seconds * 1000 + micros / 1000


async def until_redis_time(bus: AgentBus, ms: float) -> None:
    """Poll (bounded) until the Redis clock has passed `ms`."""
    with anyio.fail_after(WAIT_BOUND):
        while True:
            if await redis_ms(bus) > ms:
                return
            await anyio.sleep(0.02)


T = TypeVar("T")


async def while_it_waits(
    wait: Callable[[], Awaitable[T]], meanwhile: Callable[[], Awaitable[Any]], within: float = WAIT_BOUND
) -> T:
    """Start `wait` (a call that waits on the server), run `meanwhile` once it is waiting, and return
    what the wait returned, all `within` seconds."""
    got: list[T] = []

    async def waiting() -> None:
        got.append(await wait())

    with anyio.fail_after(within):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiting)
            await anyio.sleep(0.3)  # it has looked once and waits
            assert not got, "it did not wait"
            await meanwhile()
    return got[0]
