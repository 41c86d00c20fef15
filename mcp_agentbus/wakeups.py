"""Server-side waiting without polling: one pub/sub subscription per bus fans wake-ups out to waiters.

Scripts ``PUBLISH`` a hint (``task:<capability>``) when something a waiter may want appears. Hints
are never the source of truth: a woken waiter re-runs its script, and when the subscription is
(re)established every waiter is woken, since hints may have been missed meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
from anyio.abc import TaskStatus
from redis.asyncio.cluster import RedisCluster

from mcp_agentbus.connection import Redis
from mcp_agentbus.outages import Outage

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Waiter:
    topics: Collection[str] | None
    event: anyio.Event


class Wakeups:
    def __init__(self, redis: Redis, channel: str) -> None:
        self._redis = redis
        self._channel = channel
        self._waiters: set[_Waiter] = set()
        self._listeners: list[Callable[[str], None]] = []

    def listen(self, listener: Callable[[str], None]) -> None:
        """Also hand every hint to `listener` (synchronous; it must not raise)."""
        self._listeners.append(listener)

    @contextmanager
    def expect(self, topics: Collection[str] | None = None) -> Iterator[anyio.Event]:
        """An event set when one of `topics` (any, if None) is published. Enter it *before* checking
        state, so a hint published between the check and the wait is not missed."""
        waiter = _Waiter(topics, anyio.Event())
        self._waiters.add(waiter)
        try:
            yield waiter.event
        finally:
            self._waiters.discard(waiter)

    def _dispatch(self, topic: str | None) -> None:
        for waiter in self._waiters:
            if topic is None or waiter.topics is None or topic in waiter.topics:
                waiter.event.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled, resubscribing (with a backoff) after a lost connection or any other
        failure: waits still end at their deadline meanwhile, and every waiter looks again once back."""
        started = False
        outage = Outage(f"the wake-up subscription to {self._channel}", logger)
        while True:
            try:
                if isinstance(self._redis, RedisCluster):
                    await self._redis.initialize()  # a cluster pubsub needs the slot map to pick its node
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    outage.recovered()
                    self._dispatch(None)
                    if not started:
                        started = True
                        task_status.started()
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._dispatch(message["data"])
                            for listener in self._listeners:
                                listener(message["data"])
            except Exception as exc:  # any failure of the listener must not end waiting for good
                delay = outage.failed(exc)
                if not started:
                    started = True
                    task_status.started()
                await anyio.sleep(delay)
