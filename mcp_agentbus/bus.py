"""`AgentBus`: the coordination core on one namespace of one Redis — the Python API under the MCP tools."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
from anyio.abc import TaskStatus

from mcp_agentbus.connection import Redis, backend, connect
from mcp_agentbus.events import Events
from mcp_agentbus.inbox import Inbox
from mcp_agentbus.locks import Locks
from mcp_agentbus.presence import Presence
from mcp_agentbus.reaper import Reaper
from mcp_agentbus.settings import Settings
from mcp_agentbus.store import Store
from mcp_agentbus.tasks import Tasks
from mcp_agentbus.wakeups import Wakeups
from mcp_agentbus.workflows import Workflows


class AgentBus:
    """Tasks, workflows, presence, inboxes, locks and events of one namespace.

    Use `AgentBus.open(settings)`, which also runs the wake-up listener and the reaper::

        async with AgentBus.open(Settings(redis_url="redis://localhost:6379/0")) as bus:
            await bus.tasks.create("planner", title="write the docs")
            claim = await bus.tasks.claim("worker-1", wait_seconds=10)
    """

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.store = Store(redis, settings)
        self.wakeups = Wakeups(redis, self.store.keys.wake)
        self.tasks = Tasks(self.store, self.wakeups)
        self.workflows = Workflows(self.store)
        self.presence = Presence(self.store)
        self.inbox = Inbox(self.store, self.wakeups)
        self.locks = Locks(self.store, self.wakeups)
        self.events = Events(self.store, self.wakeups)
        self.reaper = Reaper(self.store)

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings | None = None, *, reaper: bool = True) -> AsyncIterator[AgentBus]:
        """Connect, start the background work, and close everything on exit."""
        settings = settings or Settings()
        redis = connect(settings.redis_url)
        try:
            bus = cls(redis, settings)
            async with anyio.create_task_group() as tg:
                await tg.start(partial(bus.run, reaper=reaper))
                yield bus
                tg.cancel_scope.cancel()
        finally:
            await redis.aclose()

    async def run(
        self, *, reaper: bool = True, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The background work, until cancelled: wake-ups (started once subscribed) and the reaper."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.wakeups.run)
            if reaper:
                tg.start_soon(self.reaper.run)
            task_status.started()

    async def ping(self) -> None:
        """Raise `BackendUnavailable` unless Redis answers."""
        with backend(self.settings.redis_url):
            await self.redis.ping()
