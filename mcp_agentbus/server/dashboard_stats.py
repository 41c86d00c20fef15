"""The dashboard's charts, read only: ``GET /dashboard/stats`` is the last hour minute by minute
(`core.stats.last_hour`): tasks completed, attempts failed, tasks dead, and the depth of the deepest ready
queues, now and at each minute's sample. It answers under the dashboard's access rules (`Dashboard.open`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcp_agentbus.core.stats import last_hour
from mcp_agentbus.server.dashboard_replies import answer, route

if TYPE_CHECKING:
    from mcp_agentbus.server.dashboard import Dashboard


class Stats:
    """The charts' route of a `Dashboard`, behind its access checks."""

    def __init__(self, dashboard: Dashboard) -> None:
        self._dashboard = dashboard

    def routes(self) -> list[Route]:
        return [route("/dashboard/stats", self._stats)]

    async def _stats(self, request: Request) -> Response:
        bus = await self._dashboard.open_bus(request)
        if isinstance(bus, Response):
            return bus
        return answer((await last_hour(bus.store)).to_json())
