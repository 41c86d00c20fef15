"""Push: tell subscribed clients that a resource changed, whichever server process changed it.

Every script announces what it touched on narrow wake-up channels (``wakeups.py``); a process follows
the channels of the URIs its clients subscribed to (`topics_for`), only while they do, and
`resources.changed_by` maps the hints that come to URIs. Both
MCP eras are served: 2026-07-28 clients listen through ``subscriptions/listen`` (the SDK's
`SubscriptionBus`), legacy clients (``initialize`` handshake) through ``resources/subscribe``.
With tokens, a stream or subscription lasts only while its token's grant does: before each update
the tokens file is looked at again, and what a revoked (or changed) grant had is dropped.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus
from mcp.server.connection import Connection
from mcp.server.subscriptions import ResourceUpdated, ServerEvent

from mcp_agentbus.core.wakeups import Following, Wakeups, event_topics
from mcp_agentbus.errors import AgentBusError
from mcp_agentbus.outages import Outage
from mcp_agentbus.server.auth import current_grant
from mcp_agentbus.server.resources import changed_by, parse
from mcp_agentbus.server.tokens import Grant, TokensFile

logger = logging.getLogger(__name__)

COALESCE_SECONDS = 0.02  # the hints of one change, or of a burst, become one notification per URI


def topics_for(uri: str) -> tuple[str, ...]:
    """The wake-up topics whose hints may change the resource at `uri` (`changed_by` read backwards;
    a pattern may cover more than the URI, never less). None for a URI that names no resource."""
    try:
        kind, arg = parse(uri)
    except AgentBusError:
        return ()
    if kind == "agents":  # agents show the tasks and locks they hold
        return ("event:agent.*", "event:lock.*", "event:task.*")
    if kind == "workflows":
        return (f"workflow:{arg}",) if arg else ("workflow:*", "event:workflow.*")
    if kind == "inbox":
        return (f"inbox:{arg}",)
    if kind == "locks":
        return ("locks", "event:lock.*")
    if kind == "state":
        return (f"state:{arg}",)
    return event_topics([arg])


class Listeners:
    """The `SubscriptionBus` of this process's ``subscriptions/listen`` streams (2026-07-28). A stream
    sees the resource updates of the namespace it listened in: its token's, else the server's."""

    def __init__(self, namespace: str, tokens: TokensFile | None = None) -> None:
        self._namespace = namespace
        self._tokens = tokens
        self._listeners: dict[object, tuple[str, Callable[[ServerEvent], None]]] = {}

    def watch(self, grant: Grant | None, on_gone: Callable[[], None]) -> Callable[[], None]:
        """`on_gone` once `grant` is revoked or changed (never without tokens); returns the unwatch."""
        if grant is None or self._tokens is None:
            return lambda: None
        return self._tokens.watch(grant, on_gone)

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        grant = current_grant()  # called inside the listen request
        key = object()
        self._listeners[key] = (self._namespace if grant is None else grant.namespace, listener)
        unwatch = self.watch(grant, lambda: self._listeners.pop(key, None) and None)

        def unsubscribe() -> None:
            self._listeners.pop(key, None)
            unwatch()

        return unsubscribe

    async def publish(self, event: ServerEvent) -> None:
        """An event for every stream (the SDK's list-changed events)."""
        await self.publish_in(None, event)

    async def publish_in(self, namespace: str | None, event: ServerEvent) -> None:
        """`event` for the streams of `namespace` (of all when None)."""
        if self._tokens is not None:
            self._tokens.refresh()  # drops the streams and subscriptions of revoked grants first
        for listening_in, listener in list(self._listeners.values()):
            if namespace is None or listening_in == namespace:
                try:
                    listener(event)
                except Exception:  # one bad stream must not stop the others' updates
                    logger.exception("a listen stream failed to take an update")
        await anyio.lowlevel.checkpoint()


class TooManySubscriptions(Exception):
    """A listen stream whose URIs would take its token past its subscriptions."""

    def __init__(self, held: int, asked: int, limit: int) -> None:
        super().__init__(held, asked, limit)
        self.held, self.asked, self.limit = held, asked, limit


@dataclass
class _Subscriber:
    """One legacy connection's subscriptions, counted against `owner`: its token, or itself."""

    owner: object
    uris: set[str]
    unwatch: Callable[[], None]


class Push:
    """Resource updates of one namespace, to its subscribers in both eras."""

    def __init__(self, listeners: Listeners, namespace: str, wakeups: Wakeups) -> None:
        self._listeners = listeners
        self._namespace = namespace
        self._wakeups = wakeups
        self._follows: dict[str, Following] = {}  # the wake-ups of each URI legacy subscribers follow
        self._legacy: dict[str, set[Connection]] = {}  # subscribers by URI, until their connection closes
        self._subscribers: dict[Connection, _Subscriber] = {}
        self._held: Counter[object] = Counter()  # subscriptions per owner
        self._pending: set[str] = set()
        self._due = anyio.Event()

    @property
    def subscriptions(self) -> int:
        """Legacy subscriptions held now, a (URI, connection) pair each."""
        return sum(len(connections) for connections in self._legacy.values())

    @property
    def uris(self) -> int:
        """URIs someone follows (through legacy subscriptions) now."""
        return len(self._legacy)

    @asynccontextmanager
    async def following(self, uris: Iterable[str], limit: int) -> AsyncIterator[None]:
        """The wake-ups of `uris` followed while a listen stream (2026-07-28) is open in it: once Redis
        confirmed them, no change is missed. They count, while it is open, against the `limit` of
        subscriptions its token holds (legacy ones too; without tokens, the stream's own): past it,
        `TooManySubscriptions` and nothing followed."""
        uris = set(uris)
        grant = current_grant()
        owner = object() if grant is None else grant.id
        held = self._held[owner]
        if held + len(uris) > limit:
            raise TooManySubscriptions(held, len(uris), limit)
        self._held[owner] += len(uris)
        topics = {topic for uri in uris for topic in topics_for(uri)}
        follows = self._wakeups.follow(topics, self.hint, partial(self._changed, uris))
        try:
            await follows.confirmed()
            yield
        finally:
            follows.close()
            self._release(owner, len(uris))

    async def subscribe(self, uri: str, connection: Connection, limit: int) -> bool:
        """Subscribe `connection` to `uri`, returning once its wake-ups are followed; False (and nothing
        changed) when its token (or, without tokens, the connection) already holds `limit` subscriptions.
        The same URI again counts once."""
        grant = current_grant()
        subscriber = self._subscribers.get(connection)
        if subscriber is not None and uri in subscriber.uris:
            return True
        owner = connection if grant is None else grant.id
        if self._held[owner] >= limit:
            return False
        if subscriber is None:
            unwatch = self._listeners.watch(grant, lambda: self._forget(connection))
            subscriber = self._subscribers[connection] = _Subscriber(owner, set(), unwatch)
            connection.exit_stack.callback(self._forget, connection)
        subscriber.uris.add(uri)
        self._held[owner] += 1
        self._legacy.setdefault(uri, set()).add(connection)
        follows = self._follows.get(uri)
        if follows is None:
            follows = self._wakeups.follow(topics_for(uri), self.hint, partial(self._changed, {uri}))
            self._follows[uri] = follows
        await follows.confirmed()
        return True

    def unsubscribe(self, uri: str, connection: Connection) -> None:
        subscriber = self._subscribers.get(connection)
        if subscriber is not None and uri in subscriber.uris:
            subscriber.uris.discard(uri)
            self._release(subscriber.owner, 1)
            self._drop(uri, connection)

    def _forget(self, connection: Connection) -> None:
        """Everything `connection` subscribed to: it closed, expired, failed, or lost its grant."""
        subscriber = self._subscribers.pop(connection, None)
        if subscriber is None:
            return
        subscriber.unwatch()
        self._release(subscriber.owner, len(subscriber.uris))
        for uri in subscriber.uris:
            self._drop(uri, connection)

    def _release(self, owner: object, count: int) -> None:
        self._held[owner] -= count
        if self._held[owner] <= 0:
            del self._held[owner]

    def _drop(self, uri: str, connection: Connection) -> None:
        subscribers = self._legacy.get(uri)
        if subscribers is not None:
            subscribers.discard(connection)
            if not subscribers:  # a URI nobody follows any more is not kept, nor are its wake-ups
                del self._legacy[uri]
                self._follows.pop(uri).close()

    def hint(self, hint: str) -> None:
        """A wake-up hint arrived on a followed topic."""
        self._changed(changed_by(hint))

    def _changed(self, uris: set[str]) -> None:
        """`uris` may have changed (a hint said so, or the hints of a lost connection may have gone by)."""
        if uris:
            self._pending |= uris
            self._due.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Send the pending notifications until cancelled."""
        task_status.started()
        outage = Outage(f"resource updates of namespace {self._namespace}", logger)
        while True:
            await self._due.wait()
            await anyio.sleep(COALESCE_SECONDS)
            self._due = anyio.Event()
            uris, self._pending = self._pending, set()
            try:
                await self._send(uris)
                outage.recovered()
            except Exception as exc:  # a failed round must not end the updates of every later change
                await anyio.sleep(outage.failed(exc))

    async def _send(self, uris: set[str]) -> None:
        for uri in sorted(uris):
            await self._listeners.publish_in(self._namespace, ResourceUpdated(uri=uri))
            for connection in list(self._legacy.get(uri, ())):
                try:
                    await connection.send_resource_updated(uri)
                except Exception as exc:  # a client gone mid-send must not stop the others' updates
                    logger.debug("dropping a subscriber of %s: %s", uri, exc)
                    self._forget(connection)
