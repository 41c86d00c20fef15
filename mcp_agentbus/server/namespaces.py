"""The namespaces one server process serves: for each, a bus and its push, opened on first use.

Without auth a server serves its configured namespace; with tokens, each request works in its token's
namespace. All share one Redis client; each namespace has its own wake-up connection (subscribed to
what its waiters and resource subscribers need, only while they do) and reaper.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup, TaskStatus

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.redis.connection import Redis, close, connect
from mcp_agentbus.server.push import Listeners, Push
from mcp_agentbus.settings import Settings


@dataclass(frozen=True)
class Served:
    bus: AgentBus
    push: Push
    subscribed: anyio.Event = field(default_factory=anyio.Event)  # to the namespace's wake-ups


class Namespaces:
    def __init__(self, redis: Redis, settings: Settings, listeners: Listeners, tg: TaskGroup) -> None:
        self._redis = redis
        self._settings = settings
        self._listeners = listeners
        self._tg = tg
        self._served: dict[str, Served] = {}

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, listeners: Listeners) -> AsyncIterator[Namespaces]:
        """Serve `settings.namespace` at once (subscribed before this yields), others when first asked."""
        redis = connect(settings.redis_url, timeout=settings.redis_timeout_seconds)
        try:
            async with anyio.create_task_group() as tg:
                namespaces = cls(redis, settings, listeners, tg)
                await tg.start(namespaces._run, namespaces._open(settings.namespace))
                yield namespaces
                tg.cancel_scope.cancel()
        finally:
            await close(redis)

    def get(self, namespace: str) -> Served:
        """The namespace, opened if need be. Tool calls need not wait for its subscription: once
        subscribed, Wakeups wakes every waiter to look again."""
        served = self._served.get(namespace)
        if served is None:
            served = self._open(namespace)
            self._tg.start_soon(self._run, served)
        return served

    async def subscribed(self, namespace: str) -> Served:
        """The namespace once its wake-up connection is up: a subscriber must not miss the first change
        (it also waits for its own channels: `Push.subscribe`, `Push.following`)."""
        served = self.get(namespace)
        await served.subscribed.wait()
        return served

    def _open(self, namespace: str) -> Served:
        bus = AgentBus(self._redis, self._settings.model_copy(update={"namespace": namespace}))
        push = Push(self._listeners, namespace, bus.wakeups)
        served = self._served[namespace] = Served(bus, push)
        return served

    async def _run(
        self, served: Served, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(served.bus.run)
            await tg.start(served.push.run)
            served.subscribed.set()
            task_status.started()
