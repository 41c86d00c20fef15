"""The dashboard's event streams (``GET /dashboard/stream``): each says ``changed`` when its namespace
changed, and the page fetches the snapshot again.

Every state change writes an event (one script does both), so the streams follow the namespace's events
stream, not wake-up hints: one reader per namespace per process (`_follow`: ``XREAD BLOCK`` on its own
connection), started by the first open stream of the namespace and stopped when the last one closes,
pokes every stream of it. A reader never ends of a failure: Redis down, it logs once, backs off and
tries again, the streams stay open, and each is told ``changed`` once Redis answers again.

What the streams hold is bounded: `MAX_STREAMS` per process (503 past it), `MAX_STREAMS_PER_TOKEN` per
token (429 past it); a stream says ``changed`` at most about three times a second however busy the bus
(`COALESCE_SECONDS`), and a revoked token's stream ends within `LOOK_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import cast

import anyio
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.outages import Outage
from mcp_agentbus.redis.connection import Redis, close, connect
from mcp_agentbus.server.dashboard_replies import HEADERS, refuse
from mcp_agentbus.server.tokens import Grant, TokensFile

logger = logging.getLogger(__name__)

MAX_STREAMS = 16  # open event streams per server process; past it a new one gets 503
MAX_STREAMS_PER_TOKEN = 4  # open event streams of one token; past it a new one gets 429
KEEPALIVE_SECONDS = 15.0  # a comment line, so proxies and the browser keep an idle stream open
COALESCE_SECONDS = 0.3  # at most about three "changed" events a second, however busy the bus
LOOK_SECONDS = 1.0  # how often a stream looks at the tokens file: a revoked token's stream ends within it
READ_BLOCK_MS = 5_000  # one XREAD waits at most this long, so a stopped reader leaves no command behind
READ_COUNT = 100  # events one XREAD returns at most (only the last id is kept)
STREAM_HEADERS = {**HEADERS, "X-Accel-Buffering": "no"}  # a proxy (nginx) must pass each event on at once


class _Stream:
    """One open event stream: poked by its namespace's reader, it tells its page once per burst."""

    def __init__(self, namespace: str, owner: str | None) -> None:
        self.namespace = namespace
        self.owner = owner  # the token's id; None without tokens
        self.ended = False
        self._event = anyio.Event()

    def poke(self) -> None:
        self._event.set()

    def end(self) -> None:
        self.ended = True
        self._event.set()

    async def changed(self, within: float) -> bool:
        """Whether a poke came (since the last time this said so) within `within` seconds."""
        with anyio.move_on_after(within):
            await self._event.wait()
            self._event = anyio.Event()
            return True
        return False


@dataclass
class _Reader:
    """The task following one namespace's events, and whether it has looked where they stand yet."""

    task: asyncio.Task[None]
    looked: anyio.Event


class Streams:
    """The open event streams of one server process, and the reader of each namespace they follow."""

    def __init__(self, tokens: TokensFile | None) -> None:
        self._tokens = tokens
        self._open: set[_Stream] = set()
        self._readers: dict[str, _Reader] = {}

    def __len__(self) -> int:
        return len(self._open)

    def respond(self, bus: AgentBus, grant: Grant | None) -> Response:
        """A new stream of `bus`'s namespace for a caller holding `grant`, or the refusal past a bound."""
        if len(self._open) >= MAX_STREAMS:
            return refuse(
                503,
                "unavailable",
                f"this server already has {MAX_STREAMS} dashboard streams open",
                "Close a dashboard tab, or reload the page later (it refreshes on reload).",
            )
        owner = None if grant is None else grant.id
        if owner is not None and Counter(s.owner for s in self._open)[owner] >= MAX_STREAMS_PER_TOKEN:
            return refuse(
                429,
                "too_many",
                f"this token already has {MAX_STREAMS_PER_TOKEN} dashboard streams open",
                "Close another tab of this dashboard (each open tab holds one stream), then reload.",
            )
        stream = _Stream(bus.settings.namespace, owner)
        reader = self._add(stream, bus)
        unwatch = (
            self._tokens.watch(grant, stream.end) if grant is not None and self._tokens else lambda: None
        )

        def done() -> None:
            unwatch()
            self._discard(stream)

        # The background task also frees the slot of a stream whose client left before it began.
        return StreamingResponse(
            self._events(stream, reader, done),
            media_type="text/event-stream",
            headers=STREAM_HEADERS,
            background=BackgroundTask(done),
        )

    async def _events(self, stream: _Stream, reader: _Reader, done: Callable[[], None]) -> AsyncIterator[str]:
        # With tokens a stream looks at the file every LOOK_SECONDS; without, it wakes only to keep alive.
        tick = KEEPALIVE_SECONDS if self._tokens is None else LOOK_SECONDS
        try:
            # The page fetches the snapshot once connected: a change after that fetch began must poke it,
            # so the stream says so only once its reader follows the events (or found Redis away).
            with anyio.move_on_after(LOOK_SECONDS):
                await reader.looked.wait()
            yield "retry: 1000\n: connected\n\n"
            quiet = 0.0
            while True:
                poked = await stream.changed(tick)
                if self._tokens is not None:
                    self._tokens.refresh()  # a revoked or changed grant ends the stream (`watch`)
                if stream.ended:
                    return
                if poked:
                    yield "event: changed\ndata: {}\n\n"
                    quiet = 0.0
                    await anyio.sleep(COALESCE_SECONDS)  # pokes meanwhile make one more event
                    continue
                quiet += tick
                if quiet >= KEEPALIVE_SECONDS:
                    yield ": keep-alive\n\n"
                    quiet = 0.0
        finally:
            done()

    def _add(self, stream: _Stream, bus: AgentBus) -> _Reader:
        """Count `stream` in; the reader of its namespace, started if it is the first."""
        self._open.add(stream)
        reader = self._readers.get(stream.namespace)
        if reader is None or reader.task.done():
            looked = anyio.Event()
            task = asyncio.get_running_loop().create_task(
                self._follow(bus, looked), name=f"dashboard reader of {stream.namespace}"
            )
            reader = self._readers[stream.namespace] = _Reader(task, looked)
        return reader

    def _discard(self, stream: _Stream) -> None:
        self._open.discard(stream)
        if not any(s.namespace == stream.namespace for s in self._open):
            reader = self._readers.pop(stream.namespace, None)
            if reader is not None:
                reader.task.cancel()  # the last stream of the namespace closed

    def _poke(self, namespace: str) -> None:
        for stream in self._open:
            if stream.namespace == namespace:
                stream.poke()

    async def _follow(self, bus: AgentBus, looked: anyio.Event) -> None:
        """Poke the streams of `bus`'s namespace on every new event, until cancelled; never fails. Sets
        `looked` once it knows the newest event (or that Redis is away)."""
        settings, key = bus.settings, bus.store.keys.events
        outage = Outage(f"the dashboard's reader of the events of namespace {settings.namespace}", logger)
        redis: Redis | None = None  # connected in the loop: a failing connect (local://) is retried too
        last: str | None = None  # the id of the last event seen; None: look it up (again)
        try:
            while True:
                try:
                    if redis is None:
                        timeout = settings.redis_timeout_seconds + READ_BLOCK_MS / 1000
                        redis = connect(settings.redis_url, timeout=timeout)
                    if last is None:
                        top = await redis.xrevrange(key, "+", "-", count=1)
                        last = str(top[0][0]) if top else "0-0"
                        if outage.failures:  # whatever changed while Redis was away
                            self._poke(settings.namespace)
                        outage.recovered()
                        looked.set()
                    reply = await redis.xread({key: last}, count=READ_COUNT, block=READ_BLOCK_MS)
                    if reply:
                        [(_key, entries)] = cast(list[tuple[str, list[tuple[str, object]]]], reply)
                        last = entries[-1][0]  # one stream read: its newest entry's id is next
                        self._poke(settings.namespace)
                except Exception as exc:  # Redis down or restarting: never end the streams' updates
                    last = None
                    looked.set()  # the streams open meanwhile, and hear "changed" when Redis is back
                    await anyio.sleep(outage.failed(exc))
        finally:
            if redis is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                    await close(redis)
