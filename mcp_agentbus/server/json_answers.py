"""Over HTTP, a tool call that cannot wait is answered with one JSON body, even where calls are answered
with event streams: the stream only serves a call that may send progress while it waits, and costs a
legacy (2025-11-25) session's server more CPU than the call itself (`bench/server_cpu.py`).

A call cannot wait when it is ``tools/call`` without a positive ``wait_seconds`` (every tool that waits
takes that argument, default 0). `JsonAnswers` looks at the body of each POST (`posted.py`; one past
its `PEEK_BYTES` keeps the configured answer) and says so for the request; `answer_per_call` makes the
SDK's session manager and its sessions ask, per request, rather than once for the server; such a call
reports no progress (`answered_whole`), as under ``--json-responses``, since its body carries nothing
but the result. The SDK (2.3) takes the choice only per server, so this is the one place that changes it: the
SDK's own code paths then answer the call.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_agentbus.server.posted import posted

_answer_json: ContextVar[bool] = ContextVar("answer_json", default=False)


class JsonAnswers:
    """ASGI app in front of the SDK's request handler, behind its body limit (which has read the whole
    body by then, at most 4 MiB, and only for a request that passed authentication): marks a POST that
    carries a call that cannot wait, for the SDK to answer it with one JSON body."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        call, replay, _ = await posted(scope, receive)
        token = _answer_json.set(call.cannot_wait)
        try:
            await self._app(scope, replay, send)
        finally:
            _answer_json.reset(token)


def answered_whole() -> bool:
    """Whether the call being served is answered with one JSON body: nothing may be sent before it."""
    return _answer_json.get()


def answer_per_call(manager: StreamableHTTPSessionManager) -> None:
    """Make `manager` (and each legacy session it opens) answer a request with one JSON body when
    `JsonAnswers` marked it, else as configured. Its stateless sessions and the 2026-07-28 era read the
    manager's choice per request already."""
    manager.__class__ = _PerCallManager
    limit = manager.asgi_app  # the SDK's RequestBodyLimitMiddleware, around its request handler
    limit.app = JsonAnswers(limit.app)


class _PerCallManager(StreamableHTTPSessionManager):
    @property  # an attribute in the SDK: read wherever the SDK reads it
    def json_response(self) -> bool:
        return bool(self.__dict__["json_response"]) or _answer_json.get()

    @json_response.setter
    def json_response(self, value: bool) -> None:
        self.__dict__["json_response"] = value

    def _admit_session(self, requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
        transport = super()._admit_session(requestor)
        if transport is not None:
            transport.__class__ = _PerCallTransport
        return transport


class _PerCallTransport(StreamableHTTPServerTransport):
    """A legacy session: the request being served decides. Its message router, a task of its own, reads
    the configured choice, so it would hand a message sent for a call answered whole to that call as its
    answer: such a call sends none (`answered_whole`)."""

    @property
    def is_json_response_enabled(self) -> bool:
        return bool(self.__dict__["is_json_response_enabled"]) or _answer_json.get()

    @is_json_response_enabled.setter
    def is_json_response_enabled(self, value: Any) -> None:
        self.__dict__["is_json_response_enabled"] = value
