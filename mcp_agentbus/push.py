"""Push: tell subscribed clients that a resource changed, whichever server process changed it.

Every server process already listens to its namespace's wake-up channel, on which every script
announces what it touched (``wakeups.py``); `resources.changed_by` maps those hints to URIs. Both
MCP eras are served: 2026-07-28 clients listen through ``subscriptions/listen`` (the SDK's
`SubscriptionBus`), legacy clients (``initialize`` handshake) through ``resources/subscribe``.
"""

from __future__ import annotations

import logging

import anyio
from anyio.abc import TaskStatus
from mcp.server.connection import Connection
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus

from mcp_agentbus.resources import changed_by

logger = logging.getLogger(__name__)

COALESCE_SECONDS = 0.02  # the hints of one change, or of a burst, become one notification per URI


class Push:
    def __init__(self, listeners: SubscriptionBus) -> None:
        self._listeners = listeners
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
        while True:
            await self._due.wait()
            await anyio.sleep(COALESCE_SECONDS)
            self._due = anyio.Event()
            uris, self._pending = self._pending, set()
            for uri in sorted(uris):
                await self._listeners.publish(ResourceUpdated(uri=uri))
                for connection in list(self._legacy.get(uri, ())):
                    try:
                        await connection.send_resource_updated(uri)
                    except Exception as exc:  # a client gone mid-send must not stop the others' updates
                        logger.debug("dropping a subscriber of %s: %s", uri, exc)
                        self._forget(connection)
