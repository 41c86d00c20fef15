"""Every dashboard route at once, walked from `Dashboard.routes()` so a route added later is walked too:
with a tokens file none but the page's static files answers without a token (401, before any other
refusal), a foreign Host gets none of them, and with Redis down every route that reads or acts answers
503 ``backend_unavailable`` with a hint, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from helpers.http_servers import bus_env, fresh, http_server, throwaway_redis
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from test_dashboard_actions import ACTIONS

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.server.dashboard import STATIC, Dashboard, dashboard_app
from mcp_agentbus.server.http import LOOPBACK_HOSTS, build_app
from mcp_agentbus.server.tokens import TokensFile
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio

TIMEOUT = 60  # bound on one test, a server process's start included
SECURITY = TransportSecuritySettings(
    allowed_hosts=list(LOOPBACK_HOSTS), allowed_origins=[f"http://{host}" for host in LOOPBACK_HOSTS]
)
# A request to each route that gets as far as Redis; the route walk fails on a route missing here.
REQUESTS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/dashboard/snapshot"): {},
    ("GET", "/dashboard/stats"): {},
    ("GET", "/dashboard/inbox"): {"params": {"agent": "worker-1"}},
    ("GET", "/dashboard/task"): {"params": {"id": "t-1"}},
    **{("POST", f"/dashboard/actions/{name}"): {"json": body} for name, body in ACTIONS.items()},
}
READS_NO_REDIS = {("GET", "/dashboard/access")}  # who the caller is: the tokens file, no Redis
STREAM = ("GET", "/dashboard/stream")  # stays open through an outage and says "changed" once it ends


def guarded_routes() -> list[tuple[str, str]]:
    """(method, path) of every route but the page's static files."""

    async def nothing(_namespace: str) -> AgentBus | None:
        return None

    return sorted(
        (method, route.path)
        for route in Dashboard("ns", nothing, SECURITY).routes()
        if route.path not in STATIC
        for method in route.methods or ()
        if method != "HEAD"
    )


def test_the_route_walk_knows_a_request_for_every_dashboard_route() -> None:
    assert guarded_routes() == sorted({*REQUESTS, *READS_NO_REDIS, STREAM})


async def test_with_a_tokens_file_every_route_but_the_page_answers_401_first_and_writes_nothing(
    bus: AgentBus, tmp_path: Path
) -> None:
    tokens = TokensFile(tmp_path / "tokens.json")
    tokens.create(namespace=bus.settings.namespace, agent="ops", role="operator")  # tokens are required

    async def bus_for(namespace: str) -> AgentBus | None:
        return bus if namespace == bus.settings.namespace else None

    app = Starlette(routes=Dashboard(bus.settings.namespace, bus_for, SECURITY, tokens).routes())
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8766") as http:
        for method, path in guarded_routes():
            for headers in ({}, {"Authorization": "Bearer abt_not-a-token"}, {"Authorization": "Basic x"}):
                # an action's body is not even JSON: who asks comes before what it sends (415)
                body = {"content": b"to=x", "headers": {**headers, "Content-Type": "text/plain"}}
                refused = await http.request(
                    method, path, **(body if method == "POST" else {"headers": headers})
                )
                assert refused.status_code == 401, (method, path, headers, refused.text)
                error = refused.json()["error"]
                assert error["code"] == "unauthorized" and "Authorization: Bearer" in error["hint"]
                assert refused.headers["cache-control"] == "no-store"
        for method, path in [*(("GET", path) for path in STATIC), *guarded_routes()]:
            rebound = await http.request(method, path, headers={"Host": "evil.example"})
            assert rebound.status_code == 421, (path, rebound.text)
            assert rebound.json()["error"]["code"] == "misdirected_request", (path, rebound.text)
            foreign = await http.request(method, path, headers={"Origin": "https://evil.example"})
            assert foreign.status_code == 403, (path, foreign.text)
            assert "evil.example" in foreign.json()["error"]["message"], (path, foreign.text)
        for path in STATIC:  # the page itself asks for a token
            assert (await http.get(path)).status_code == 200
    assert (await bus.events.recent("*")).events == []


@pytest.mark.parametrize("served_by", ["agentbus serve", "agentbus dashboard"])
async def test_a_path_or_method_the_dashboard_has_not_is_refused_in_its_error_shape(
    settings: Settings, served_by: str
) -> None:
    app = build_app(settings) if served_by == "agentbus serve" else dashboard_app(settings)
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8766") as http:
        unknown = await http.post("/dashboard/actions/explode", json={})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "not_found" and unknown.json()["error"]["hint"]
        for method, path in guarded_routes():
            wrong = await http.request("PUT", path)
            assert wrong.status_code == 405, (path, wrong.text)
            error = wrong.json()["error"]
            assert error["code"] == "method_not_allowed" and method in error["hint"], (path, error)
            assert method in wrong.headers["allow"]
        assert (await http.get("/nowhere")).text == "Not Found"  # elsewhere, as Starlette says it


async def test_with_redis_down_every_route_that_reads_or_acts_answers_503_with_a_hint_and_logs_no_trace(
    tmp_path: Path,
) -> None:
    log = tmp_path / "server.log"
    with (
        throwaway_redis(tmp_path) as (redis_proc, url),
        http_server(bus_env(url, fresh("down")), log) as server,
    ):
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        async with httpx2.AsyncClient(base_url=server.base, timeout=TIMEOUT) as http:
            with anyio.fail_after(TIMEOUT):
                for (method, path), request in REQUESTS.items():
                    down = await http.request(method, path, **request)
                    assert down.status_code == 503, (method, path, down.text)
                    error = down.json()["error"]
                    assert error["code"] == "backend_unavailable", (path, error)
                    assert "Redis" in error["message"] and error["hint"], (path, error)
                    assert down.headers["cache-control"] == "no-store"
                assert (await http.get("/dashboard/access")).status_code == 200
                async with http.stream("GET", "/dashboard/stream") as stream:
                    assert stream.status_code == 200
                    assert await anext(stream.aiter_lines()) == "retry: 1000"
        server.assert_clean_log()
