"""``GET /dashboard/task?id=<task id>``: one task in detail for the dashboard's task panel (attempts and
their holders, lease, result, error, progress, recent events: `core.task_detail`), behind the same access
checks as the snapshot. An unknown or expired id answers 404 with the bus's own ``not_found``, a malformed
one 400 ``invalid_argument`` (`dashboard_replies.failed`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcp_agentbus.core import task_detail
from mcp_agentbus.ids import TASK_ID_RE
from mcp_agentbus.server.dashboard_replies import answer, refuse, route

if TYPE_CHECKING:
    from mcp_agentbus.server.dashboard import Dashboard


class TaskDetail:
    """The task panel's route of a `Dashboard`, behind its access checks."""

    def __init__(self, dashboard: Dashboard) -> None:
        self._dashboard = dashboard

    def routes(self) -> list[Route]:
        return [route("/dashboard/task", self._task)]

    async def _task(self, request: Request) -> Response:
        bus = await self._dashboard.open_bus(request)
        if isinstance(bus, Response):
            return bus
        task_id = request.query_params.get("id", "")
        if not TASK_ID_RE.match(task_id):  # named as the query names it, not as the bus's argument
            return refuse(
                400,
                "invalid_argument",
                f"id {task_id[:40]!r} is not a task id",
                "Ask for /dashboard/task?id=t-<number>, the id a workflow's task shows.",
            )
        detail = await task_detail.read(bus.store, task_id)
        return answer(detail.model_dump_json())
