"""Over HTTP, a call that waits ends when its client hangs up: it takes nothing.

A ``claim_task`` (or ``acquire_lock``, ``read_inbox``, ...) with a positive ``wait_seconds`` may wait for
minutes. If its client is killed or gives up on the connection meanwhile, the answer can reach nobody:
this server keeps no stream to resume. The SDK (2.3) ends such a call only where it runs in the request
and its event stream hears the hang-up (2026-07-28, or ``--stateless``); a legacy (2025-11-25) session's
call runs on in the session, and a call answered with one JSON body never hears of it. Left running,
the wait would take the next task or lock for a client that is gone, held until its lease or lock
expires.

`HangUps` watches the connection of each POST that carries such a call. If it closes before the answer
is whole, the request is cancelled, and a legacy session is told, as the client would tell it
(``notifications/cancelled``, through the SDK's own handler): the wait ends and claims nothing, as a
cancelled wait does in the core (a claim cancelled while its script runs is handed back). The MCP spec
lets a client resume a stream instead of cancelling; with no stream to resume, cancelling is all that
is left. A call that cannot wait is not watched: it ends as fast as its answer.

An answer in an event stream is whole once the call's response went out in it, not when the stream
ends: the SDK closes every stream at once when the server begins to stop, while the calls of legacy
sessions run on, so a stream closed before its response ends its call as a hang-up does.
"""

from __future__ import annotations

import json
import logging

import anyio
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types import RequestId
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_agentbus.server.posted import posted
from mcp_agentbus.server.sessions import SESSION_HEADER

logger = logging.getLogger(__name__)

CANCEL_REASON = "the client hung up before the answer"
CLIENT_GONE = "a client hung up before its request was whole; nothing was run"
CANCEL_SECONDS = 5.0  # a session takes a notification at once; one that does not is stuck anyway


def answers(chunk: bytes, call: RequestId) -> bool:
    """Whether `chunk` of an event stream carries the JSON-RPC response to request `call` (one event per
    chunk, as the SDK sends them)."""
    for line in chunk.splitlines():
        if line.startswith(b"data:"):
            try:
                message = json.loads(line[5:])
            except (ValueError, RecursionError):
                continue
            if (
                isinstance(message, dict)
                and message.get("id") == call
                and ("result" in message or "error" in message)
            ):
                return True
    return False


class HangUps:
    """ASGI app in front of the SDK's request handler, behind its body limit (the body is whole by then):
    a POST carrying a call that may wait is cancelled if its client hangs up before the answer is whole."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        posting, replay, past_body = await posted(scope, receive)
        call = posting.waiting
        if call is None:
            try:
                await self._app(scope, replay, send)
            except ClientDisconnect:  # the SDK's 2026-07-28 handler lets it out, to uvicorn's traceback
                logger.info(CLIENT_GONE)
            return
        answered = events = False

        async def answering(message: Message) -> None:
            nonlocal answered, events
            if message["type"] == "http.response.start":
                events = any(
                    k.lower() == b"content-type" and v.startswith(b"text/event-stream")
                    for k, v in message.get("headers", [])
                )
            elif message["type"] == "http.response.body" and not answered:
                # An event stream can end without the answer: the SDK closes them all when the server
                # begins to shut down, while a legacy session's call runs on.
                more = message.get("more_body", False)
                answered = answers(message.get("body", b""), call) if events else not more
            await send(message)

        async with anyio.create_task_group() as tg:

            async def until_hung_up() -> None:
                # After the body, the server's receive returns http.disconnect once the client hangs up
                # or the answer is complete; the SDK may be listening as well, which is allowed.
                while (await past_body())["type"] != "http.disconnect":
                    pass
                if not answered:
                    tg.cancel_scope.cancel()

            tg.start_soon(until_hung_up)
            await self._app(scope, replay, answering)
            tg.cancel_scope.cancel()
        # An answer left incomplete without an error: its client hung up, or its stream was closed.
        if not answered and any(name == SESSION_HEADER for name, _ in scope["headers"]):
            await self._cancel_in_session(scope, call)

    async def _cancel_in_session(self, scope: Scope, call: RequestId) -> None:
        """Tell the legacy session of `scope` that request `call` is cancelled: a notification POSTed to
        the SDK's handler on the client's behalf (its headers, its token), answered 202 with no body."""
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": call, "reason": CANCEL_REASON},
            }
        ).encode()
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> Message:
            return pending.pop() if pending else {"type": "http.disconnect"}

        status: list[int] = []

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        # Shielded and bounded: the client is gone, so nothing else will end the call it left behind.
        with anyio.move_on_after(CANCEL_SECONDS, shield=True):
            try:
                await self._app({**scope, "headers": headers}, receive, send)
            except Exception as exc:  # the session's own end ends its calls
                logger.info("could not cancel call %r of a client that hung up: %r", call, exc)
                return
        if status != [202]:  # an unknown or ended session: its call ended with it
            logger.info("cancelling call %r of a client that hung up: answered %s", call, status)


def end_calls_on_hang_up(manager: StreamableHTTPSessionManager) -> None:
    """Put `HangUps` in front of the request handler of `manager`, behind the SDK's body limit."""
    limit = manager.asgi_app
    limit.app = HangUps(limit.app)
