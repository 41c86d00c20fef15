"""With ``--workers N``, the requests of a legacy (``initialize``) session reach the worker that holds it.

The kernel hands each new connection to any worker, but the SDK keeps a legacy session (its state, its
GET stream, its resource subscriptions) in the process that opened it. So the session id a client is
given names that worker: ``w<slot>-<the SDK's id>``, written into the answer that opens the session. A
request naming another worker's session is passed on whole, body and answer streamed, over that
worker's Unix socket (each worker listens on one besides the shared port); the owner serves it as its
own, auth and limits included. The SDK itself only ever sees its own ids. A session whose worker is
gone (killed, restarting) gets the SDK's answer for an unknown session, 404, on which a client opens
a new one; a request its worker drops unanswered gets 502 saying so. A passed-on call costs about
twice the CPU of one served where it arrived. 2026-07-28 requests carry no session and are served
where they arrive.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_agentbus.server.sessions import MCP_PATH, SESSION_HEADER, refused

logger = logging.getLogger(__name__)

_ROUTED = re.compile(rb"w(\d{1,4})-(.+)")
# Of a connection, not of the request: they stay with each hop.
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer", b"upgrade"}
)
# Of an answer, also what the worker that relays it adds itself.
_NOT_RELAYED = _HOP_BY_HOP | {b"date", b"server"}
CONNECT_SECONDS = 2.0
# The longest path of a Unix socket (macOS; Linux allows 107 bytes).
MAX_SOCKET_PATH = 103


def socket_path(directory: Path, slot: int) -> Path:
    """Where worker `slot` listens for the requests other workers pass on."""
    return directory / f"worker-{slot}.sock"


def listen(path: Path) -> socket.socket:
    """A worker's own Unix socket at `path` (one left by a worker that died is replaced)."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(2048)
    return sock


class SessionRoutes:
    """ASGI middleware of worker `slot` of `size`, whose Unix sockets are in `directory`."""

    def __init__(self, app: ASGIApp, slot: int, size: int, directory: Path) -> None:
        self._app = app
        self._slot = slot
        self._size = size
        self._directory = directory
        self._prefix = b"w%d-" % slot
        self._clients: dict[int, httpx2.AsyncClient] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != MCP_PATH:
            await self._app(scope, receive, send)
            return
        session = dict(scope["headers"]).get(SESSION_HEADER)
        routed = None if session is None else _ROUTED.fullmatch(session)
        if routed is not None:
            owner = int(routed.group(1))
            elsewhere = owner != self._slot and owner < self._size
            if elsewhere and await self._pass_on(owner, scope, receive, send):
                return
            # Its own session, or one whose worker is gone: the SDK answers for its bare id.
            headers = [(k, routed.group(2) if k == SESSION_HEADER else v) for k, v in scope["headers"]]
            scope = {**scope, "headers": headers}
        await self._app(scope, receive, self._naming(send))

    def _naming(self, send: Send) -> Send:
        """`send`, with the session id of an answer made to name this worker."""

        async def naming(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [
                        (k, self._prefix + v if k == SESSION_HEADER else v) for k, v in message["headers"]
                    ],
                }
            await send(message)

        return naming

    async def _pass_on(self, owner: int, scope: Scope, receive: Receive, send: Send) -> bool:
        """Serve the request through worker `owner`; False if it cannot be reached (nothing was read
        of the request then). From the moment its body is whole (a call may wait for minutes before
        its answer starts), a client that hangs up ends the connection to the owner, which serves a
        client gone as its own."""
        query = scope.get("query_string", b"")
        url = f"http://worker{scope['path']}" + (f"?{query.decode('latin-1')}" if query else "")
        headers = [(k, v) for k, v in scope["headers"] if k not in _HOP_BY_HOP]
        with_body = any(k in (b"content-length", b"transfer-encoding") for k, _ in scope["headers"])
        upstream = _Upstream()
        whole = anyio.Event()  # the request's body is whole: what `receive` gives next is the hang-up
        # Not client.build_request, which adds the client's own headers (Accept among them): the owner
        # must see the request as the client sent it.
        request = httpx2.Request(
            scope["method"],
            url,
            headers=headers,
            content=_body(receive, whole) if with_body else None,
            extensions={"trace": upstream.trace},
        )
        async with anyio.create_task_group() as tg:

            async def until_gone() -> None:
                # Made once connected: a request the owner cannot take is served here, reading `receive`.
                await (whole if with_body else upstream.connected).wait()
                while (await receive())["type"] != "http.disconnect":
                    pass
                upstream.hang_up()

            tg.start_soon(until_gone)
            try:
                await self._serve_there(owner, request, upstream, scope, receive, send)
            except _Unreachable:
                return False
            finally:
                tg.cancel_scope.cancel()  # what it waits on is this request's receive, or an event
        return True

    async def _serve_there(
        self,
        owner: int,
        request: httpx2.Request,
        upstream: _Upstream,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        try:
            answer = await self._client(owner).send(request, stream=True)
        except httpx2.ConnectError:
            logger.info("worker %d does not answer; its sessions are gone", owner)
            raise _Unreachable from None
        except _ClientGone:  # before its request was whole: the owner saw it cut off, and did nothing
            return
        except httpx2.TransportError as exc:
            if not upstream.gone:
                logger.warning("worker %d did not answer a request passed on to it: %r", owner, exc)
                await _unanswered(scope, receive, send)
            return
        try:
            start = [(k, v) for k, v in answer.headers.raw if k.lower() not in _NOT_RELAYED]
            await send({"type": "http.response.start", "status": answer.status_code, "headers": start})
            await _relay(answer, send, owner, upstream)
        finally:
            await answer.aclose()

    def _client(self, owner: int) -> httpx2.AsyncClient:
        client = self._clients.get(owner)
        if client is None:
            # A fresh connection per request, none kept: one kept would race the owner's keep-alive
            # timeout (a request on it as the owner closes it is lost), and a Unix connect costs
            # little beside the relay. No bound on them: those of this worker bound them.
            limits = httpx2.Limits(max_connections=None, max_keepalive_connections=0)
            transport = httpx2.AsyncHTTPTransport(uds=str(socket_path(self._directory, owner)), limits=limits)
            # A stuck owner is not waited for to accept; its answer (a call may wait) takes what it takes.
            timeout = httpx2.Timeout(connect=CONNECT_SECONDS, read=None, write=None, pool=None)
            client = self._clients[owner] = httpx2.AsyncClient(transport=transport, timeout=timeout)
        return client


class _ClientGone(Exception):
    """The client hung up (or ran out of time) before its request was whole."""


class _Unreachable(Exception):
    """The owner does not take connections: its sessions are gone."""


class _Upstream:
    """The connection a request is passed on over. A client that hangs up ends it by shutting its
    socket down, so that what waits on it (the answer's head or its next chunk) ends as if the owner had
    closed it, rather than being cancelled: anyio's Unix-socket streams wait on a future that uvloop may
    complete in the very turn it is cancelled in, which logs an InvalidStateError with a traceback."""

    def __init__(self) -> None:
        self.connected = anyio.Event()
        self.gone = False
        self._socket: socket.socket | None = None

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: the connection's socket, once connected."""
        if event == "connection.connect_unix_socket.complete" and info.get("return_value") is not None:
            self._socket = info["return_value"].get_extra_info("socket")
            self.connected.set()

    def hang_up(self) -> None:
        self.gone = True
        if self._socket is not None:
            with contextlib.suppress(OSError):  # closed already
                self._socket.shutdown(socket.SHUT_RDWR)


async def _body(receive: Receive, whole: anyio.Event) -> AsyncIterator[bytes]:
    """The request's body as it arrives; cut off (the owner then discards it) if its client goes."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        yield message.get("body", b"")
        if not message.get("more_body", False):
            whole.set()
            return


async def _relay(answer: httpx2.Response, send: Send, owner: int, upstream: _Upstream) -> None:
    """The owner's answer to the client as it comes; one that breaks off stays cut off (the client's
    connection closes without its last chunk, so the client sees it incomplete)."""
    try:
        async for chunk in answer.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except httpx2.TransportError as exc:
        if not upstream.gone:
            logger.warning("worker %d stopped in the middle of an answer: %r", owner, exc)
        return
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _unanswered(scope: Scope, receive: Receive, send: Send) -> None:
    await refused(
        502,
        "session_unavailable",
        "the server process that holds this session did not answer (it may be restarting)",
        "Retry in a moment; if the answer is then 404 (session not found), open a new session (initialize).",
        retry_after=1,
    )(scope, receive, send)
