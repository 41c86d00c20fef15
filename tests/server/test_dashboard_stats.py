"""The dashboard's stats route, in process on both backends: what it answers (its access rules are those
of every route: test_dashboard_routes.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import ClaimResult
from mcp_agentbus.server.dashboard import Dashboard
from mcp_agentbus.server.http import LOOPBACK_HOSTS

pytestmark = pytest.mark.anyio

SECURITY = TransportSecuritySettings(
    allowed_hosts=list(LOOPBACK_HOSTS), allowed_origins=[f"http://{host}" for host in LOOPBACK_HOSTS]
)


@pytest.fixture
async def http(bus: AgentBus) -> AsyncIterator[httpx2.AsyncClient]:
    async def bus_for(_namespace: str) -> AgentBus:
        return bus

    app = Starlette(routes=Dashboard(bus.settings.namespace, bus_for, SECURITY).routes())
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8766") as opened:
        yield opened


def lease(claim: ClaimResult) -> tuple[str, str]:
    assert claim.task is not None and claim.lease is not None
    return claim.task.id, claim.lease.lease_token


async def test_stats_answer_the_last_hours_completions_and_queue_depth(
    bus: AgentBus, http: httpx2.AsyncClient
) -> None:
    for title in ("one", "two", "waits"):
        await bus.tasks.create("planner", title=title, capability="charts")
    for _ in range(2):
        task_id, token = lease(await bus.tasks.claim("worker", capabilities=["charts"]))
        await bus.tasks.complete("worker", task_id, token)

    reply = await http.get("/dashboard/stats")
    assert reply.status_code == 200 and reply.headers["cache-control"] == "no-store"
    stats = reply.json()
    assert len(stats["minutes"]) == len(stats["done"]) == 60
    assert sum(stats["done"]) == 2 and sum(stats["failed"]) == 0
    assert stats["ready_now"] == {"charts": 1} and len(stats["ready"]["charts"]) == 60
