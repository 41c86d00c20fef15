"""``GET /dashboard/task?id=<task id>``: one task in detail for the dashboard's task panel (attempts and
their holders, lease, result, error, progress, recent events: `core.task_detail`), behind the same access
checks as the snapshot. An unknown or expired id answers 404 with the bus's own ``not_found``, a malformed
one 400 ``invalid_argument``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_agentbus.core import task_detail
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.errors import AgentBusError

HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def task_route(open_bus: Callable[[Request], Awaitable[AgentBus | Response]]) -> Route:
    """The route, reading through the bus `open_bus` gives for a request (or answering its refusal)."""

    async def task(request: Request) -> Response:
        bus = await open_bus(request)
        if isinstance(bus, Response):
            return bus
        task_id = request.query_params.get("id", "")
        try:
            detail = await task_detail.read(bus.store, task_id)
        except AgentBusError as exc:
            status = 404 if exc.code == "not_found" else 400
            body = {"error": {"code": exc.code, "message": exc.message, "hint": exc.hint}}
            return JSONResponse(body, status, headers=HEADERS)
        return Response(detail.model_dump_json(), media_type="application/json", headers=HEADERS)

    return Route("/dashboard/task", task, methods=["GET"])
