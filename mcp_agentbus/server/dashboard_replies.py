"""How every dashboard route answers: the same headers on each reply, JSON bodies, and one error shape,
``{"error": {"code", "message", "hint"}}``, written for the person reading the page.

A route's own refusals (no token, a namespace not served, a body that is not JSON) go through `refuse`;
an `AgentBusError` the bus raises goes through `failed`, which gives each code its one status: Redis
down is 503 ``backend_unavailable`` with its hint on every route. Routes are made with `route`, which
answers any `AgentBusError` its endpoint lets out that way, so none ends in a traceback and a 500.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mcp_agentbus.errors import AgentBusError

HEADERS = {  # the page loads nothing from elsewhere, no other site may frame it, and nothing is cached
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
# The status of each error code of the bus; any other code is the caller's to fix (400).
STATUS = {
    "not_found": 404,
    "forbidden": 403,
    "wrong_state": 409,
    "payload_too_large": 413,
    "backend_unavailable": 503,
    "internal": 500,
}

Endpoint = Callable[[Request], Awaitable[Response]]


def route(path: str, endpoint: Endpoint, method: str = "GET") -> Route:
    """A dashboard route whose endpoint's `AgentBusError` (Redis down, an unknown id) is its answer."""

    async def answering(request: Request) -> Response:
        try:
            return await endpoint(request)
        except AgentBusError as exc:
            return failed(exc)

    return Route(path, answering, methods=[method])


def answer(body: dict[str, Any] | str) -> Response:
    """A JSON reply: `body` as a dict, or already encoded."""
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return Response(text, media_type="application/json", headers=HEADERS)


def refuse(
    status: int, code: str, message: str, hint: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A route's own refusal."""
    return JSONResponse(
        {"error": {"code": code, "message": message, "hint": hint}},
        status_code=status,
        headers={**HEADERS, **(headers or {})},
    )


async def not_routed(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no such path) and 405 (not its method), in the one error shape under
    /dashboard; elsewhere as Starlette words them."""
    assert isinstance(exc, HTTPException)  # registered for those two statuses only
    path = request.url.path
    if not path.startswith("/dashboard"):
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return refuse(
            405,
            "method_not_allowed",
            f"{path} does not take {request.method}",
            f"Use {allowed or 'the method the page uses'}.",
            exc.headers,
        )
    return refuse(
        404, "not_found", f"the dashboard has no {path}", "Open /dashboard and use what the page offers."
    )


NOT_ROUTED = {404: not_routed, 405: not_routed}


def failed(exc: AgentBusError) -> JSONResponse:
    """What the bus refused or could not do, with the status of its code (`STATUS`)."""
    return refuse(STATUS.get(exc.code, 400), exc.code, exc.message, exc.hint)
