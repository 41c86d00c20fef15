"""The namespaces one server process serves: for each, a bus and its push, opened on first use.

Without auth a server serves its configured namespace; with tokens, each request works in its token's
namespace. All share one Redis client; each namespace has its own wake-up subscription and reaper.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup, TaskStatus

from mcp_agentbus.bus import AgentBus
from mcp_agentbus.connection import Redis, connect
from mcp_agentbus.push import Listeners, Push
from mcp_agentbus.settings import Settings


@dataclass(frozen=True)
class Served:
    bus: AgentBus
    push: Push


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
        redis = connect(settings.redis_url)
        try:
            async with anyio.create_task_group() as tg:
                namespaces = cls(redis, settings, listeners, tg)
                await tg.start(namespaces._run, namespaces._open(settings.namespace))
                yield namespaces
                tg.cancel_scope.cancel()
        finally:
            await redis.aclose()

    def get(self, namespace: str) -> Served:
        served = self._served.get(namespace)
        if served is None:
            # Not waiting for the subscription is safe: once subscribed, Wakeups wakes every waiter.
            served = self._open(namespace)
            self._tg.start_soon(self._run, served)
        return served

    def _open(self, namespace: str) -> Served:
        bus = AgentBus(self._redis, self._settings.model_copy(update={"namespace": namespace}))
        push = Push(self._listeners, namespace)
        bus.wakeups.listen(push.hint)
        served = self._served[namespace] = Served(bus, push)
        return served

    async def _run(
        self, served: Served, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(served.bus.run)
            await tg.start(served.push.run)
            task_status.started()
