"""`AgentBus`: the coordination core on one namespace of one Redis — the Python API under the MCP tools."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from functools import cached_property, partial
from typing import Any

import anyio
from anyio.abc import TaskStatus

from mcp_agentbus.context import Caller
from mcp_agentbus.core.control import Control
from mcp_agentbus.core.events import Events
from mcp_agentbus.core.inbox import Inbox
from mcp_agentbus.core.locks import Locks
from mcp_agentbus.core.presence import Presence
from mcp_agentbus.core.reaper import Reaper
from mcp_agentbus.core.state import State
from mcp_agentbus.core.tasks import Tasks
from mcp_agentbus.core.wakeups import Wakeups
from mcp_agentbus.core.workflows import Workflows
from mcp_agentbus.redis.connection import Redis, close, connect
from mcp_agentbus.redis.keys import Keys
from mcp_agentbus.redis.store import Store
from mcp_agentbus.settings import Settings


@asynccontextmanager
async def background(*work: Callable[..., Coroutine[Any, Any, None]]) -> AsyncIterator[None]:
    """Run `work` (each started with ``TaskGroup.start``) for the duration of the block, then cancel it.
    An exception of the block comes out as itself, not wrapped in the task group's ExceptionGroup."""
    try:
        async with anyio.create_task_group() as tg:
            for run in work:
                await tg.start(run)
            yield
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


class AgentBus:
    """Tasks, workflows, presence, inboxes, locks, events and shared state of one namespace.

    Use `AgentBus.open(settings)`, which also runs the wake-up listener and the reaper::

        async with AgentBus.open(Settings(redis_url="redis://localhost:6379/0")) as bus:
            await bus.tasks.create("planner", title="write the docs")
            claim = await bus.tasks.claim("worker-1", wait_seconds=10)
    """

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.wakeups = Wakeups(redis, Keys(settings.namespace))
        self.store = Store(redis, settings)
        self.reaper = Reaper(self.store)

    def acting(self, caller: Caller) -> AgentBus:
        """This bus for one call made for `caller` (context.py): every script the call runs renews its
        agent's presence, brings that agent's notices into its watch, and charges its owner. The view
        shares the Redis client, the wake-ups and the reaper."""
        view = object.__new__(AgentBus)  # not copy.copy, which would keep the services made on self's store
        view.redis = self.redis
        view.settings = self.settings
        view.wakeups = self.wakeups
        view.reaper = self.reaper
        view.store = self.store.acting(caller)
        return view

    # The services, each made on first use: a call's view (`acting`) uses one or two of them.

    @cached_property
    def tasks(self) -> Tasks:
        return Tasks(self.store, self.wakeups)

    @cached_property
    def workflows(self) -> Workflows:
        return Workflows(self.store)

    @cached_property
    def control(self) -> Control:
        """Cancel and retry."""
        return Control(self.store)

    @cached_property
    def presence(self) -> Presence:
        return Presence(self.store)

    @cached_property
    def inbox(self) -> Inbox:
        return Inbox(self.store, self.wakeups)

    @cached_property
    def locks(self) -> Locks:
        return Locks(self.store, self.wakeups)

    @cached_property
    def events(self) -> Events:
        return Events(self.store, self.wakeups)

    @cached_property
    def state(self) -> State:
        return State(self.store, self.wakeups)

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings | None = None, *, reaper: bool = True) -> AsyncIterator[AgentBus]:
        """Connect, start the background work, and close everything on exit."""
        settings = settings or Settings()
        redis = connect(settings.redis_url, timeout=settings.redis_timeout_seconds)
        try:
            bus = cls(redis, settings)
            async with background(partial(bus.run, reaper=reaper)):
                yield bus
        finally:
            await close(redis)

    async def run(
        self, *, reaper: bool = True, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The background work, until cancelled: wake-ups (started once subscribed) and the reaper."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.wakeups.run)
            if reaper:
                tg.start_soon(self.reaper.run)
            task_status.started()

    async def gather_notices(self) -> None:
        """Bring the notices of the agent this view's call is made for (`acting`) when the call ran no
        script that brought them (a read): the clock script changes nothing, and like every script it
        renews that agent's presence and appends its notices to its reply."""
        watch = self.store.caller.watch
        if watch is not None and watch.state is None:
            await self.store.now_ms()

    async def ping(self) -> None:
        """Raise `BackendUnavailable` unless Redis answers."""
        with self.store.backend():
            await self.redis.ping()
