"""Who the dashboard lets in and who may act there (`Dashboard.open`), in-process on both backends: the
routes of the other dashboard modules start with it, so a probe route stands in for them here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.server.dashboard import Dashboard, may_act
from mcp_agentbus.server.tokens import TokensFile

pytestmark = pytest.mark.anyio

SECURITY = TransportSecuritySettings(
    allowed_hosts=["127.0.0.1:*", "127.0.0.1"], allowed_origins=["http://127.0.0.1"]
)


def probed(dashboard: Dashboard) -> Starlette:
    async def probe(request: Request) -> Response:
        opened = await dashboard.open(request)
        if isinstance(opened, Response):
            return opened
        grant = None if opened.grant is None else opened.grant.id
        return JSONResponse(
            {"namespace": opened.bus.settings.namespace, "grant": grant, "acts": opened.may_act}
        )

    return Starlette(routes=[*dashboard.routes(), Route("/probe", probe, methods=["GET", "POST"])])


@pytest.fixture
def tokens(tmp_path: Path) -> TokensFile:
    return TokensFile(tmp_path / "tokens.json")


async def client(bus: AgentBus, tokens: TokensFile | None) -> httpx2.AsyncClient:
    async def bus_for(namespace: str) -> AgentBus | None:
        return bus if namespace == bus.settings.namespace else None

    app = probed(Dashboard(bus.settings.namespace, bus_for, SECURITY, tokens))
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1")


@pytest.fixture
async def open_http(bus: AgentBus) -> AsyncIterator[httpx2.AsyncClient]:
    async with await client(bus, None) as http:
        yield http


def test_only_the_all_and_operator_roles_may_act_alone_or_in_a_comma_list(tokens: TokensFile) -> None:
    def grant(role: str) -> bool:
        return may_act(tokens.create(namespace="ns", agent="a", role=role)[1])

    assert may_act(None)  # no tokens file: the loopback person may act
    assert grant("all") and grant("operator") and grant("worker, operator") and grant("create_task,all")
    assert (
        not grant("worker")
        and not grant("coordinator")
        and not grant("operators")
        and not grant("send_message")
    )


async def test_without_a_tokens_file_a_loopback_caller_is_let_in_and_may_act(
    bus: AgentBus, open_http: httpx2.AsyncClient
) -> None:
    opened = await open_http.get("/probe")
    assert opened.json() == {"namespace": bus.settings.namespace, "grant": None, "acts": True}


async def test_a_viewer_token_may_look_and_an_operator_token_may_act_in_its_namespace(
    bus: AgentBus, tokens: TokensFile
) -> None:
    viewer, seen = tokens.create(namespace=bus.settings.namespace, agent="watcher", role="worker")
    operator, acting = tokens.create(namespace=bus.settings.namespace, agent="ops", role="operator")
    async with await client(bus, tokens) as http:
        looks = await http.get("/probe", headers={"Authorization": f"Bearer {viewer}"})
        assert looks.json() == {"namespace": bus.settings.namespace, "grant": seen.id, "acts": False}
        acts = await http.get("/probe", headers={"Authorization": f"Bearer {operator}"})
        assert acts.json() == {"namespace": bus.settings.namespace, "grant": acting.id, "acts": True}
        for headers in ({}, {"Authorization": "Bearer abt_nothing"}):
            refused = await http.get("/probe", headers=headers)
            assert refused.status_code == 401 and "Authorization: Bearer" in refused.json()["error"]["hint"]


async def test_an_action_must_be_a_json_post_so_another_site_cannot_submit_a_form_to_it(
    open_http: httpx2.AsyncClient,
) -> None:
    form = await open_http.post("/probe", data={"text": "hi"})
    assert form.status_code == 415, form.text
    assert form.json()["error"]["code"] == "unsupported_media_type"
    json_post = await open_http.post("/probe", json={"text": "hi"})
    assert json_post.status_code == 200 and json_post.json()["acts"] is True
    foreign = await open_http.post("/probe", json={}, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403


async def test_a_token_shows_only_its_own_namespace_and_says_how_to_look_at_another(
    bus: AgentBus, tokens: TokensFile
) -> None:
    token, grant = tokens.create(namespace=bus.settings.namespace, agent="ops", role="operator")
    auth = {"Authorization": f"Bearer {token}"}
    async with await client(bus, tokens) as http:
        own = await http.get("/dashboard/access", params={"namespace": bus.settings.namespace}, headers=auth)
        assert own.json() == {
            "namespace": bus.settings.namespace,
            "namespaces": [bus.settings.namespace],
            "tokens": True,
            "token": {"id": grant.id, "agent": "ops", "role": "operator"},
            "may_act": True,
            "acts_as": "ops",
        }
        other = await http.get("/dashboard/snapshot", params={"namespace": "elsewhere"}, headers=auth)
        assert other.status_code == 403, other.text
        assert "Add a token of namespace 'elsewhere'" in other.json()["error"]["hint"]
