"""The wake-up channels one process subscribes to in a namespace, counted, on one pub/sub connection.

`hold` and `release` count who needs a topic's channel; a writer task alone sends the (UN)SUBSCRIBE
commands that bring the connection to what is held, so commands never interleave, and a reader task
alone reads the connection: hints, and the confirmations that let a waiter check state knowing any
later hint reaches it. Per channel the confirmations come in the order the commands went, which is how
each is matched to the subscribe it answers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from redis.exceptions import ConnectionError as RedisConnectionError

from mcp_agentbus.redis.connection import Redis, subscriber
from mcp_agentbus.redis.keys import Keys

# How long entering a wait waits for Redis to confirm its subscriptions before looking anyway (the waiter
# is then woken once they are confirmed, or by the reconnect that tells every waiter).
CONFIRM_SECONDS = 2.0


@dataclass(eq=False)
class _Channel:
    topic: str
    refs: int = 0
    on_server: bool = False  # a SUBSCRIBE went on this connection, and no UNSUBSCRIBE after it
    ready: anyio.Event = field(default_factory=anyio.Event)  # the latest SUBSCRIBE is confirmed
    sent: deque[anyio.Event] = field(default_factory=deque)  # `ready` of each SUBSCRIBE not yet confirmed
    leaving: int = 0  # UNSUBSCRIBEs not yet confirmed

    @property
    def idle(self) -> bool:
        return not self.refs and not self.on_server and not self.sent and not self.leaving


class Channels:
    """Counted subscriptions to wake-up channels; `on_hint(topic, hint)` gets each message, and
    `on_confirmed(topic)` each confirmed subscription."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        on_hint: Callable[[str, str], None],
        on_confirmed: Callable[[str], None],
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._on_hint = on_hint
        self._on_confirmed = on_confirmed
        self._channels: dict[str, _Channel] = {}  # by channel name
        self._changed = anyio.Event()  # what is held differs from what was sent
        self._sent = anyio.Event()  # a command went: there is something to read
        self._connected = False

    @property
    def where(self) -> str:
        return f"{self._keys.prefix}wake:*"

    @property
    def wanted(self) -> int:
        return sum(1 for channel in self._channels.values() if channel.refs)

    def hold(self, topics: Collection[str]) -> None:
        for topic in topics:
            name = self._keys.wake(topic)
            channel = self._channels.get(name)
            if channel is None:
                channel = self._channels[name] = _Channel(topic)
            # Not subscribed now, though its event was confirmed or sent (a SUBSCRIBE then unsubscribed):
            # only the SUBSCRIBE still to go confirms this holder, not the reply to an earlier one.
            if not channel.on_server and (
                channel.ready.is_set() or any(e is channel.ready for e in channel.sent)
            ):
                channel.ready = anyio.Event()
            channel.refs += 1
            if not channel.on_server:
                self._changed.set()

    def release(self, topics: Collection[str]) -> None:
        for topic in topics:
            name = self._keys.wake(topic)
            channel = self._channels[name]
            channel.refs -= 1
            if channel.idle:  # never subscribed: nobody waits for its confirmation any more
                channel.ready.set()
                del self._channels[name]
            elif not channel.refs:
                self._changed.set()

    async def confirmed(self, topics: Collection[str]) -> bool:
        """Whether Redis confirmed the subscriptions to `topics` (waiting up to CONFIRM_SECONDS while
        connected); False when it did not (yet)."""
        waits = [
            ready for topic in topics if not (ready := self._channels[self._keys.wake(topic)].ready).is_set()
        ]
        if not waits:  # the common case: subscribed already
            return True
        if not self._connected:
            return False
        with anyio.move_on_after(CONFIRM_SECONDS):
            for ready in waits:
                await ready.wait()
            return True
        return False

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[anyio.Event]:
        """A pub/sub connection, subscribed to what is held; the event is set once all of it is
        confirmed. Failures (a lost connection) raise out of it."""
        client, pubsub, sharded = await subscriber(self._redis, self._keys.wake(""))
        for name, channel in list(self._channels.items()):  # nothing is subscribed on a new connection
            channel.on_server = False
            channel.sent.clear()
            channel.leaving = 0
            if not channel.refs:
                del self._channels[name]
            elif channel.ready.is_set():
                channel.ready = anyio.Event()
        self._changed.set()
        ready = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write, pubsub, sharded)
                tg.start_soon(self._read, pubsub)
                tg.start_soon(self._all_confirmed, ready)
                yield ready
                tg.cancel_scope.cancel()
        finally:
            self._connected = False
            with anyio.CancelScope(shield=True):
                await pubsub.aclose()
                if client is not None:
                    await client.aclose()

    async def _all_confirmed(self, ready: anyio.Event) -> None:
        for channel in list(self._channels.values()):
            await channel.ready.wait()
        self._connected = True
        ready.set()

    async def _write(self, pubsub: Any, sharded: bool) -> None:
        subscribe, unsubscribe = (
            (pubsub.ssubscribe, pubsub.sunsubscribe) if sharded else (pubsub.subscribe, pubsub.unsubscribe)
        )
        while True:
            await self._changed.wait()
            self._changed = anyio.Event()
            on: list[str] = []
            off: list[str] = []
            for name, channel in list(self._channels.items()):
                if channel.refs and not channel.on_server:
                    on.append(name)
                    channel.on_server = True
                    channel.sent.append(channel.ready)
                elif not channel.refs and channel.on_server:
                    off.append(name)
                    channel.on_server = False
                    channel.leaving += 1
                if channel.idle:
                    del self._channels[name]
            # All of a namespace's channels share its hash tag, so one command may name them all.
            if on:
                await subscribe(*on)
            if off:
                await unsubscribe(*off)
            if on or off:
                self._sent.set()

    async def _read(self, pubsub: Any) -> None:
        while True:
            if not pubsub.subscribed:  # nothing subscribed, no reply due: nothing to read until a command
                self._sent = anyio.Event()
                await self._sent.wait()
                continue
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            name = message["channel"]
            channel = self._channels.get(name)
            if channel is None:
                continue
            kind = message["type"]
            if kind in ("message", "smessage") and channel.refs:
                self._on_hint(channel.topic, message["data"])
            elif kind in ("subscribe", "ssubscribe"):
                if not channel.sent:  # redis-py reconnected and subscribed again: hints were missed
                    raise RedisConnectionError(f"the connection subscribed to {name} was lost")
                channel.sent.popleft().set()
                if channel.refs:
                    self._on_confirmed(channel.topic)
            elif kind in ("unsubscribe", "sunsubscribe"):
                if not channel.leaving:  # Redis dropped it (a Cluster slot moved): subscribe anew
                    raise RedisConnectionError(f"Redis unsubscribed {name} (its slot moved?)")
                channel.leaving -= 1
            if channel.idle:
                del self._channels[name]
