"""Server-side waiting without polling: wake-up hints on narrow channels, subscribed on demand.

Scripts publish a hint on the channel of each topic they touch (``task:<capability>``, ``inbox:<agent>``,
``state:<key>``, ``event:<topic>``, ...: ``lua/include/common.lua``). A process subscribes to a topic's
channel only while one of its waiters, or a follower (push.py's resource subscriptions), needs it: counted
per channel on the bus's one pub/sub connection, and unsubscribed when the last leaves. An idle process
holds no subscription and receives no hint. Hints are never the truth: a woken waiter re-runs its script.
Enter a waiter *before* checking state; entering returns once Redis confirmed its subscriptions, so a hint
published after the check began is never missed. When the connection is (re)established every waiter is
woken, and every follower told, since hints may have been missed meanwhile.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import partial

import anyio
from anyio.abc import TaskStatus

from mcp_agentbus.core.channels import Channels
from mcp_agentbus.outages import Outage
from mcp_agentbus.redis.connection import Redis
from mcp_agentbus.redis.keys import Keys

logger = logging.getLogger(__name__)

# A ready task is for one claimer: its hint wakes one waiting claimer per process, not all of them
# (a thousand waiters would otherwise each re-run the claim script for every task created).
ONE_AT_A_TIME = "task:"
ANY_TASK = "task:*"  # a ready task of any capability (Lua publishes it beside ``task:<cap>``)
ALL_EVENTS = "event:*"
_WILDCARD = re.compile(r"[*?\[]")


def news_for(agent: str | None) -> tuple[str, ...]:
    """The hints that end any wait of `agent` early: a message delivered to it (direct, role or
    broadcast: ``message:``), or a lease or lock of its taken back (``lost:``)."""
    return () if agent is None else (f"message:{agent}", f"lost:{agent}")


def event_topics(patterns: Collection[str]) -> tuple[str, ...]:
    """The hint topics covering the events whose topic matches one of `patterns` (shell-style; every
    event when none): an exact topic's own, a ``family.…`` pattern's family (``event:task.*``), else all."""
    topics: list[str] = []
    for pattern in patterns:
        family, dot, _ = pattern.partition(".")
        if not _WILDCARD.search(pattern):
            topics.append(f"event:{pattern}")
        elif dot and not _WILDCARD.search(family):
            topics.append(f"event:{family}.*")
        else:
            return (ALL_EVENTS,)
    return tuple(dict.fromkeys(topics)) or (ALL_EVENTS,)


def lock_topics(resource: str) -> tuple[str, ...]:
    """The hint topics of the locks that can hold up a wait for canonical `resource`: its path's, and
    each directory's above it (a lock freed below it hints there too: ``lua/include/common.lua``)."""
    path = resource.removesuffix("/")
    return (f"lock:{path}", *(f"lock:{path[:i]}" for i, char in enumerate(path) if char == "/"))


STOPPED_FOR_MESSAGE = "Stopped waiting early: a message arrived for you (read_inbox)."
STOPPED_FOR_LOSS = (
    "Stopped waiting early: a lease or lock of yours was taken back (see the notice naming it)."
)


@dataclass(eq=False)
class Waiter:
    """One call waiting in this process, and the topics it waits on."""

    topics: frozenset[str]
    event: anyio.Event
    claimer: bool  # takes one-at-a-time hints one at a time, and hands on those it does not use
    hints: int = 0  # one-at-a-time hints handed to this claimer alone
    heard: set[str] = field(default_factory=set)  # the topics of the hints that woke it
    unconfirmed: bool = False  # looked before its subscriptions were confirmed: woken once they are

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


@dataclass(eq=False)
class Following:
    """A follower's hold on its topics' channels (push.py): `listener` gets the hint of every message
    on them, and `missed` is called once the connection is back after it was lost (hints may have gone
    by meanwhile), until `close`. Both synchronous; what they raise is logged."""

    topics: frozenset[str]
    listener: Callable[[str], None]
    missed: Callable[[], None]
    _wakeups: Wakeups

    async def confirmed(self) -> None:
        """Once Redis confirmed the subscriptions (or gave up waiting: a reconnect tells every waiter)."""
        await self._wakeups._channels.confirmed(self.topics)

    def close(self) -> None:
        if self._wakeups._followers.pop(self, False) is None:  # once
            self._wakeups._channels.release(self.topics)


@dataclass(eq=False, slots=True)
class _Registered:
    """A waiter listed in `wakeups` and its `topics` held while its `async with` lasts. A class rather
    than @asynccontextmanager: every read and claim enters one, and this costs half as much."""

    wakeups: Wakeups
    waiter: Waiter
    topics: frozenset[str]  # none when the call will not wait

    async def __aenter__(self) -> Waiter:
        self.wakeups._channels.hold(self.topics)
        self.wakeups._waiters[self.waiter] = None
        try:
            if not await self.wakeups._channels.confirmed(self.topics):
                self.waiter.unconfirmed = True
        except BaseException:  # cancelled while subscribing: its client went away
            self._leave()
            # a ready task's hint it got meanwhile, as the claimer it was counted as, goes to another
            self.wakeups.pass_on(self.topics, self.waiter.hints)
            raise
        return self.waiter

    async def __aexit__(self, *_: object) -> None:
        self._leave()

    def _leave(self) -> None:
        del self.wakeups._waiters[self.waiter]
        self.wakeups._channels.release(self.topics)


class Wakeups:
    """The process's wake-up subscriptions in one namespace, and the waiters and followers they serve."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._waiters: dict[Waiter, None] = {}  # in arrival order: the longest waiting is woken first
        self._followers: dict[Following, None] = {}
        self._channels = Channels(redis, keys, self._dispatch, self._confirmed)

    @property
    def subscriptions(self) -> int:
        """Channels this process wants subscribed now (0 when nothing waits or follows)."""
        return self._channels.wanted

    def expect(self, topics: Iterable[str], *, waiting: bool = True) -> AbstractAsyncContextManager[Waiter]:
        """A waiter whose event is set when a hint on one of `topics` comes. Enter it *before* checking
        state: it returns once subscribed. A call that will not wait (`waiting` False) subscribes to
        nothing."""
        return self._registered(Waiter(frozenset(topics), anyio.Event(), claimer=False), waiting)

    def claiming(self, topics: Iterable[str], *, waiting: bool = True) -> AbstractAsyncContextManager[Waiter]:
        """`expect` for a claimer: a ready task's hint wakes one claimer (`Waiter.hints` counts those it
        got), which owes each of them a look at the queue and hands on (`pass_on`) those it does not use."""
        return self._registered(Waiter(frozenset(topics), anyio.Event(), claimer=True), waiting)

    def follow(
        self, topics: Iterable[str], listener: Callable[[str], None], missed: Callable[[], None]
    ) -> Following:
        """Hand the hints on `topics` to `listener`, and call `missed` when some may have been missed,
        until the returned `Following` is closed."""
        following = Following(frozenset(topics), listener, missed, self)
        self._channels.hold(following.topics)
        self._followers[following] = None
        return following

    def _registered(self, waiter: Waiter, waiting: bool) -> AbstractAsyncContextManager[Waiter]:
        return _Registered(self, waiter, waiter.topics if waiting else frozenset())

    def pass_on(self, topics: Collection[str], count: int) -> None:
        """`count` one-at-a-time hints a claimer did not use (it took one task, or left): each wakes
        another claimer for `topics`, so no ready task waits for a hint that was spent."""
        for _ in range(count):
            if not self._wake_one(topics):
                return

    def _wake_one(self, topics: Collection[str]) -> bool:
        """Wake the longest-waiting idle claimer for `topics`; with none idle, the hint goes to a woken
        one, which will pass it on if it is left over. False when no claimer waits for it."""
        woken = None
        for waiter in self._waiters:
            if waiter.claimer and not waiter.topics.isdisjoint(topics):
                if not waiter.event.is_set():
                    waiter.wake(None)  # a task announced for any claimer of the capability: no news
                    waiter.hints += 1
                    return True
                woken = woken or waiter
        if woken is None:
            return False
        woken.hints += 1
        return True

    def _dispatch(self, topic: str | None, hint: str | None) -> None:
        """A hint on `topic` (None: the connection is back, so every waiter looks again)."""
        if topic is None:
            for waiter in self._waiters:
                waiter.wake(None)
            for following in list(self._followers):
                self._tell(following, following.missed)
            return
        if topic.startswith(ONE_AT_A_TIME):
            for waiter in self._waiters:  # waiters that are not claimers hear it as any other hint
                if not waiter.claimer and topic in waiter.topics:
                    waiter.wake(topic)
            self._wake_one((topic,))
        else:
            for waiter in self._waiters:
                if topic in waiter.topics:
                    waiter.wake(topic)
        for following in list(self._followers):
            if hint is not None and topic in following.topics:
                self._tell(following, partial(following.listener, hint))

    @staticmethod
    def _tell(following: Following, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception:  # a follower's bug must not cost the others (or the waiters) their hints
            logger.exception("a wake-up follower failed on %s", sorted(following.topics))

    def _confirmed(self, topic: str) -> None:
        """`topic`'s subscription is confirmed: a waiter that looked before it did looks again."""
        for waiter in self._waiters:
            if waiter.unconfirmed and topic in waiter.topics:
                waiter.unconfirmed = False
                waiter.wake(None)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep the subscriptions until cancelled, reconnecting (with a backoff) after a lost connection
        or any other failure: waits still end at their deadline meanwhile, and every waiter looks again
        once back. Started once connected (or once the first attempt failed)."""
        outage = Outage(f"the wake-up subscriptions of {self._channels.where}", logger)
        started = False
        while True:
            try:
                async with self._channels.connected() as ready:
                    await ready.wait()
                    outage.recovered()
                    self._dispatch(None, None)
                    if not started:
                        started = True
                        task_status.started()
                    await anyio.sleep_forever()
            except Exception as exc:  # any failure of the listener must not end waiting for good
                while isinstance(exc, ExceptionGroup) and exc.exceptions:  # a task of the connection's
                    exc = exc.exceptions[0]
                delay = outage.failed(exc)
                if not started:
                    started = True
                    task_status.started()
                await anyio.sleep(delay)
