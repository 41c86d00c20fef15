"""Push: tell subscribed clients that a resource changed, whichever server process changed it.

Every server process already listens to its namespace's wake-up channel, on which every script
announces what it touched (``wakeups.py``); `resources.changed_by` maps those hints to URIs. Both
MCP eras are served: 2026-07-28 clients listen through ``subscriptions/listen`` (the SDK's
`SubscriptionBus`), legacy clients (``initialize`` handshake) through ``resources/subscribe``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus
from mcp.server.connection import Connection
from mcp.server.subscriptions import ResourceUpdated, ServerEvent

from mcp_agentbus.auth import current_grant
from mcp_agentbus.outages import Outage
from mcp_agentbus.resources import changed_by

logger = logging.getLogger(__name__)

COALESCE_SECONDS = 0.02  # the hints of one change, or of a burst, become one notification per URI


class Listeners:
    """The `SubscriptionBus` of this process's ``subscriptions/listen`` streams (2026-07-28). A stream
    sees the resource updates of the namespace it listened in: its token's, else the server's."""

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self._listeners: dict[object, tuple[str, Callable[[ServerEvent], None]]] = {}

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        grant = current_grant()  # called inside the listen request
        key = object()
        self._listeners[key] = (self._namespace if grant is None else grant.namespace, listener)
        return lambda: self._listeners.pop(key, None) and None

    async def publish(self, event: ServerEvent) -> None:
        """An event for every stream (the SDK's list-changed events)."""
        await self.publish_in(None, event)

    async def publish_in(self, namespace: str | None, event: ServerEvent) -> None:
        """`event` for the streams of `namespace` (of all when None)."""
        for listening_in, listener in list(self._listeners.values()):
            if namespace is None or listening_in == namespace:
                try:
                    listener(event)
                except Exception:  # one bad stream must not stop the others' updates
                    logger.exception("a listen stream failed to take an update")
        await anyio.lowlevel.checkpoint()


class Push:
    """Resource updates of one namespace, to its subscribers in both eras."""

    def __init__(self, listeners: Listeners, namespace: str) -> None:
        self._listeners = listeners
        self._namespace = namespace
        self._legacy: dict[str, set[Connection]] = {}  # subscribers by URI, until their connection closes
        self._connections: set[Connection] = set()
        self._pending: set[str] = set()
        self._due = anyio.Event()

    def subscribe(self, uri: str, connection: Connection) -> None:
        if connection not in self._connections:
            self._connections.add(connection)
            connection.exit_stack.callback(self._forget, connection)
        self._legacy.setdefault(uri, set()).add(connection)

    def unsubscribe(self, uri: str, connection: Connection) -> None:
        self._legacy.get(uri, set()).discard(connection)

    def _forget(self, connection: Connection) -> None:
        self._connections.discard(connection)
        for subscribers in self._legacy.values():
            subscribers.discard(connection)

    def hint(self, hint: str) -> None:
        """A wake-up hint arrived (a `Wakeups` listener)."""
        uris = changed_by(hint)
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
