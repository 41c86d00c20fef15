"""Sessions that act under a token, and how a refused resource read looks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
from mcp import Client
from mcp.client.session import MessageHandlerFnT
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS

from helpers.http_servers import ERA, Server
from helpers.mcp_session import Bus


@asynccontextmanager
async def connect_as(
    server: Server,
    mode: str,
    token: str,
    message_handler: MessageHandlerFnT | None = None,
    statuses: list[int] | None = None,
) -> AsyncIterator[Bus]:
    """A client session to `server` with `Authorization: Bearer <token>` on every request, with the
    output schemas of the tools its token lists; `statuses` collects every HTTP status it gets."""

    async def record(response: httpx2.Response) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    async with httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx2.Timeout(30, read=300),
        event_hooks={"response": [record]},
    ) as http:
        transport = streamable_http_client(server.mcp, http_client=http)
        async with Client(transport, mode=mode, message_handler=message_handler) as client:
            assert client.protocol_version == ERA[mode]
            listed = await client.list_tools()
            schemas = {t.name: t.output_schema for t in listed.tools if t.output_schema is not None}
            yield Bus(client, schemas)


def assert_resource_refused(exc: MCPError, uri: str, code: str, *fragments: str) -> None:
    assert exc.code == INVALID_PARAMS, exc
    assert isinstance(exc.data, dict) and exc.data["uri"] == uri, exc.data
    error = exc.data["error"]
    assert error["code"] == code, error
    for fragment in fragments:
        assert fragment in error["message"] + error["hint"], (fragment, error)
