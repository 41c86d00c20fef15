"""Resource reads and subscriptions: reading JSON, (un)subscribing, watching for updates."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.session import IncomingMessage, MessageHandlerFnT
from mcp.client.subscriptions import ResourceUpdated
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import (
    ResourceUpdatedNotification,
    TextResourceContents,
)

QUIET = 0.3  # how long "nothing more arrives" is watched for; never a bound on how fast things are


MIME = "application/json"


ROOT = "agentbus://"


async def read_json(client: Client, uri: str) -> Any:
    """The one JSON content of a resource, checked to carry its URI and the JSON mime type."""
    result = await client.read_resource(uri)
    assert len(result.contents) == 1, result.contents
    content = result.contents[0]
    assert isinstance(content, TextResourceContents), content
    assert str(content.uri) == uri
    assert content.mime_type == MIME
    return json.loads(content.text)


async def subscribe(client: Client, uri: str) -> None:
    """resources/subscribe, which the SDK deprecates (it is gone in 2026-07-28) but legacy hosts use."""
    with pytest.warns(MCPDeprecationWarning):
        await client.subscribe_resource(uri)


async def unsubscribe(client: Client, uri: str) -> None:
    with pytest.warns(MCPDeprecationWarning):
        await client.unsubscribe_resource(uri)


@dataclass
class Watcher:
    """A client of a server of its own, subscribed to resource URIs; counts the updates it gets
    against the updates the test expects."""

    client: Client | None = None
    seen: Counter[str] = field(default_factory=Counter)
    expected: Counter[str] = field(default_factory=Counter)
    _arrived: anyio.Event = field(default_factory=anyio.Event)

    def note(self, uri: str) -> None:
        self.seen[uri] += 1
        self._arrived.set()
        self._arrived = anyio.Event()

    async def _until_seen(self, wanted: Counter[str]) -> None:
        while any(self.seen[uri] < count for uri, count in wanted.items()):
            await self._arrived.wait()

    async def expect(self, *uris: str) -> None:
        """One more update of each of `uris` is due: wait (bounded) until it came."""
        self.expected.update(uris)
        with anyio.fail_after(10):
            await self._until_seen(self.expected)

    async def quiet(self) -> None:
        """Wait until nothing arrives for QUIET seconds."""
        with anyio.fail_after(10):
            while True:
                count = self.seen.total()
                await anyio.sleep(QUIET)
                if self.seen.total() == count:
                    return

    async def exactly(self) -> None:
        """Once things are quiet: each expected update came exactly as often as expected, and no
        other did. (One change must be one notification per URI.)"""
        await self.quiet()
        assert self.seen == self.expected

    async def drain(self) -> None:
        """Forget whatever was still on its way (from changes made before subscribing)."""
        await self.quiet()
        self.seen.clear()
        self.expected.clear()

    async def another(self, uri: str, *, within: float) -> bool:
        """Whether one more update of `uri` than expected so far comes within `within` seconds."""
        with anyio.move_on_after(within):
            await self._until_seen(Counter({uri: self.expected[uri] + 1}))
            return True
        return False


def on_updates(watcher: Watcher) -> MessageHandlerFnT:
    """A client's message_handler that counts legacy resource updates into `watcher`."""

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            watcher.note(str(message.params.uri))

    return on_message


@asynccontextmanager
async def subscribed(
    client: Client, mode: str, uris: Sequence[str], watcher: Watcher
) -> AsyncIterator[Watcher]:
    """`client` subscribed to `uris` the way its era does it: resources/subscribe (legacy; build the
    client with ``message_handler=on_updates(watcher)``), or one subscriptions/listen stream
    (2026-07-28), whose events alone are counted (the SDK also hands them to a message_handler)."""
    watcher.client = client
    if mode == "legacy":
        assert client.protocol_version == "2025-11-25"
        for uri in uris:
            await subscribe(client, uri)
        yield watcher
        return
    assert client.protocol_version == "2026-07-28"
    async with client.listen(resource_subscriptions=uris) as subscription, anyio.create_task_group() as tg:
        assert subscription.honored.resource_subscriptions == list(uris)

        async def pump() -> None:
            async for event in subscription:
                if isinstance(event, ResourceUpdated):
                    watcher.note(event.uri)

        tg.start_soon(pump)
        yield watcher
        tg.cancel_scope.cancel()


async def follow(client: Client, mode: str, uri: str) -> None:
    """Subscribe to `uri` the way `mode`'s era does it (a listen stream is closed again at once)."""
    if mode == "legacy":
        await subscribe(client, uri)
        return
    async with client.listen(resource_subscriptions=[uri]):
        pass
