"""Server-side waiting without polling: one pub/sub subscription per bus fans wake-ups out to waiters.

Scripts ``PUBLISH`` a hint (``task:<capability>``) when something a waiter may want appears. Hints
are never the source of truth: a woken waiter re-runs its script, and when the subscription is
(re)established every waiter is woken, since hints may have been missed meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskStatus
from redis.asyncio.cluster import RedisCluster

from mcp_agentbus.outages import Outage
from mcp_agentbus.redis.connection import Redis

logger = logging.getLogger(__name__)


# A ready task is for one claimer: its hint wakes one waiting claimer per process, not all of them
# (a thousand waiters would otherwise each re-run the claim script for every task created).
ONE_AT_A_TIME = "task:"


def news_for(agent: str | None) -> tuple[str, ...]:
    """The hints that end any wait of `agent` early: a message delivered to it (direct, role or
    broadcast: ``message:``), or a lease or lock of its taken back (``lost:``)."""
    return () if agent is None else (f"message:{agent}", f"lost:{agent}")


STOPPED_FOR_MESSAGE = "Stopped waiting early: a message arrived for you (read_inbox)."
STOPPED_FOR_LOSS = (
    "Stopped waiting early: a lease or lock of yours was taken back (see the notice naming it)."
)


@dataclass(eq=False)
class Waiter:
    """One call waiting in this process, and the topics it waits on (None = any)."""

    topics: Collection[str] | None
    event: anyio.Event
    claimer: bool  # takes one-at-a-time hints one at a time, and hands on those it does not use
    hints: int = 0  # one-at-a-time hints handed to this claimer alone
    heard: set[str] = field(default_factory=set)  # the topics of the hints that woke it

    def wants(self, topics: Collection[str] | None) -> bool:
        """Whether a hint on `topics` concerns this waiter."""
        return self.topics is None or topics is None or not set(self.topics).isdisjoint(topics)

    def wake(self, topic: str | None) -> None:
        if topic is not None:
            self.heard.add(topic)
        self.event.set()

    def stopped_by_news(self, agent: str | None, *, awaited: Collection[str] = ()) -> str | None:
        """The notice saying why a wait of `agent` ended early, if news for it (`news_for`) woke it; a
        topic the wait itself awaits (`awaited`) is no such news."""
        heard = self.heard.difference(awaited)
        if agent is not None and f"message:{agent}" in heard:
            return STOPPED_FOR_MESSAGE
        if agent is not None and f"lost:{agent}" in heard:
            return STOPPED_FOR_LOSS
        return None


class Wakeups:
    """The process's one subscription to the namespace's wake-up channel, and the waiters it wakes: a
    script that changes state publishes hints; a waiter looks again when one concerns it."""

    def __init__(self, redis: Redis, channel: str) -> None:
        self._redis = redis
        self._channel = channel
        self._waiters: dict[Waiter, None] = {}  # in arrival order: the longest waiting is woken first
        self._listeners: list[Callable[[str], None]] = []

    def listen(self, listener: Callable[[str], None]) -> None:
        """Also hand every hint to `listener` (synchronous; it must not raise)."""
        self._listeners.append(listener)

    def expect(self, topics: Collection[str] | None = None) -> AbstractContextManager[Waiter]:
        """A waiter whose event is set when one of `topics` (any, if None) is published. Enter it *before*
        checking state, so a hint published between the check and the wait is not missed."""
        return self._registered(Waiter(topics, anyio.Event(), claimer=False))

    def claiming(self, topics: Collection[str] | None) -> AbstractContextManager[Waiter]:
        """`expect` for a claimer: a ready task's hint wakes one claimer (`Waiter.hints` counts those it
        got), which owes each of them a look at the queue and hands on (`pass_on`) those it does not use."""
        return self._registered(Waiter(topics, anyio.Event(), claimer=True))

    @contextmanager
    def _registered(self, waiter: Waiter) -> Iterator[Waiter]:
        self._waiters[waiter] = None
        try:
            yield waiter
        finally:
            del self._waiters[waiter]

    def pass_on(self, topics: Collection[str] | None, count: int) -> None:
        """`count` one-at-a-time hints a claimer did not use (it took one task, or left): each wakes
        another claimer for `topics`, so no ready task waits for a hint that was spent."""
        for _ in range(count):
            if not self._wake_one(topics):
                return

    def _wake_one(self, topics: Collection[str] | None) -> bool:
        """Wake the longest-waiting idle claimer for `topics`; with none idle, the hint goes to a woken
        one, which will pass it on if it is left over. False when no claimer waits for it."""
        woken = None
        for waiter in self._waiters:
            if waiter.claimer and waiter.wants(topics):
                if not waiter.event.is_set():
                    waiter.wake(None)  # a task announced for any claimer of the capability: no news
                    waiter.hints += 1
                    return True
                woken = woken or waiter
        if woken is None:
            return False
        woken.hints += 1
        return True

    def _dispatch(self, topic: str | None) -> None:
        if topic is not None and topic.startswith(ONE_AT_A_TIME):
            for waiter in self._waiters:  # waiters that are not claimers hear it as any other hint
                if not waiter.claimer and waiter.wants((topic,)):
                    waiter.wake(topic)
            self._wake_one((topic,))
            return
        for waiter in self._waiters:
            if topic is None or waiter.topics is None or topic in waiter.topics:
                waiter.wake(topic)

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
