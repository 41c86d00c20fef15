"""The request deadline on each of uvicorn's HTTP/1.1 protocols (h11, and httptools of the ``fast``
extra): a half-sent request is closed after the deadline, a whole one is served, and a kept-alive
connection gets a fresh deadline for its next request. A real uvicorn server on a loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
import uvicorn
from helpers import free_port
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from mcp_agentbus.server.request_deadline import H11Deadline, _httptools_deadline, has_httptools, protocol

pytestmark = pytest.mark.anyio

TIMEOUT = 0.5  # the deadline under test
BOUND = 15.0  # on each wait below


async def hello(_: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


def kinds() -> list[type[asyncio.Protocol]]:
    return [H11Deadline, _httptools_deadline()] if has_httptools() else [H11Deadline]


@asynccontextmanager
async def serving(kind: type[asyncio.Protocol]) -> AsyncIterator[int]:
    port = free_port()
    deadline = type(kind.__name__, (kind,), {"timeout": TIMEOUT})
    app = Starlette(routes=[Route("/", hello)])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, http=deadline, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    with anyio.fail_after(BOUND):
        while not server.started:  # noqa: ASYNC110 - uvicorn sets a flag, it has no event to wait on
            await anyio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def read_all(stream: anyio.abc.ByteStream) -> bytes:
    got = b""
    try:
        while chunk := await stream.receive():
            got += chunk
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
        pass
    return got


@pytest.mark.parametrize("kind", kinds(), ids=lambda k: k.__name__)
async def test_a_half_sent_request_is_closed_and_a_whole_one_served(kind: type[asyncio.Protocol]) -> None:
    async with serving(kind) as port:
        with anyio.fail_after(BOUND):
            half = await anyio.connect_tcp("127.0.0.1", port)
            whole = await anyio.connect_tcp("127.0.0.1", port)
            async with half, whole:
                await half.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                await whole.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                assert b"hello" in await read_all(whole)
                assert b"200 OK" not in await read_all(half)  # closed by the deadline, unanswered


@pytest.mark.parametrize("kind", kinds(), ids=lambda k: k.__name__)
async def test_a_kept_alive_connection_gets_a_fresh_deadline_per_request(
    kind: type[asyncio.Protocol],
) -> None:
    async with serving(kind) as port:
        with anyio.fail_after(BOUND):
            stream = await anyio.connect_tcp("127.0.0.1", port)
            async with stream:
                await stream.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                first = await stream.receive()
                assert b"hello" in first
                await anyio.sleep(2 * TIMEOUT)  # idle between requests: no deadline runs
                await stream.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                assert b"hello" in await read_all(stream)


def test_the_fastest_installed_protocol_is_chosen_with_the_setting() -> None:
    chosen = protocol(2.5)
    assert chosen.timeout == 2.5  # type: ignore[attr-defined]
    assert issubclass(chosen, H11Deadline) != has_httptools()
