"""The dashboard's inbox route, in process on both backends: an agent's threads, looked at without
marking anything read, and shown only to a caller who may see them (no side door past the MCP rules)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.server.dashboard import Dashboard
from mcp_agentbus.server.dashboard_inbox import BODY_SHOWN
from mcp_agentbus.server.http import LOOPBACK_HOSTS
from mcp_agentbus.server.tokens import TokensFile

pytestmark = pytest.mark.anyio

SECURITY = TransportSecuritySettings(
    allowed_hosts=list(LOOPBACK_HOSTS), allowed_origins=[f"http://{host}" for host in LOOPBACK_HOSTS]
)


def client(bus: AgentBus, tokens: TokensFile | None = None) -> httpx2.AsyncClient:
    async def bus_for(_namespace: str) -> AgentBus:
        return bus

    app = Starlette(routes=Dashboard(bus.settings.namespace, bus_for, SECURITY, tokens).routes())
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:8766")


@pytest.fixture
async def http(bus: AgentBus) -> AsyncIterator[httpx2.AsyncClient]:
    async with client(bus) as opened:
        yield opened


async def test_inbox_answers_an_agents_threads_without_marking_anything_read(
    bus: AgentBus, http: httpx2.AsyncClient
) -> None:
    asked = await bus.inbox.send("lead", "worker", "which parser?", subject="parsing")
    await bus.inbox.send("worker", "lead", "the fast one", reply_to=asked.message_id)  # not worker's inbox
    await bus.inbox.send("lead", "worker", "and the tests", thread_id=asked.thread_id)
    await bus.inbox.read("worker", limit=1)  # "which parser?" is read
    long = await bus.inbox.send("ops", "worker", "x" * (BODY_SHOWN + 10))

    reply = await http.get("/dashboard/inbox", params={"agent": "worker"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["agent"], body["shown"]) == ("worker", 3)
    newest, older = body["threads"]
    assert newest["thread_id"] == long.thread_id
    assert newest["messages"][0]["cut"] and len(newest["messages"][0]["body"]) == BODY_SHOWN
    assert older["thread_id"] == asked.thread_id and older["subject"] == "parsing"
    assert [(m["body"], m["from"], m["unread"]) for m in older["messages"]] == [
        ("which parser?", "lead", False),
        ("and the tests", "lead", True),
    ]
    assert older["last_at"] == older["messages"][-1]["sent_at"]

    unread = await bus.inbox.read("worker")  # the look consumed nothing
    assert [m.body for m in unread.messages] == ["and the tests", "x" * (BODY_SHOWN + 10)]


async def test_inbox_of_no_or_a_bad_agent_is_refused_with_what_to_do(http: httpx2.AsyncClient) -> None:
    missing = await http.get("/dashboard/inbox")
    assert missing.status_code == 400
    assert missing.json()["error"]["hint"] == "Add ?agent=<agent id>."
    bad = await http.get("/dashboard/inbox", params={"agent": "no such/agent"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_argument"
    assert "agent id" in bad.json()["error"]["message"]
    empty = await http.get("/dashboard/inbox", params={"agent": "quiet"})
    assert empty.json() == {"agent": "quiet", "limit": 50, "shown": 0, "threads": []}


async def test_a_viewer_token_reads_only_its_own_agents_inboxes_and_operators_read_every_one(
    bus: AgentBus, tmp_path: Path
) -> None:
    tokens = TokensFile(tmp_path / "tokens.json")
    await bus.inbox.send("lead", "worker-1", "yours")
    await bus.inbox.send("worker-1", "lead", "the lead's, private")

    def bearer(agent: str, role: str) -> dict[str, str]:
        token, _ = tokens.create(namespace=bus.settings.namespace, agent=agent, role=role)
        return {"Authorization": f"Bearer {token}"}

    async def bodies(http: httpx2.AsyncClient, headers: dict[str, str], agent: str) -> list[str]:
        reply = await http.get("/dashboard/inbox", params={"agent": agent}, headers=headers)
        assert reply.status_code == 200, (agent, reply.text)
        return [m["body"] for thread in reply.json()["threads"] for m in thread["messages"]]

    async with client(bus, tokens) as http:
        viewer = bearer("worker-*", "worker")
        assert await bodies(http, viewer, "worker-1") == ["yours"]
        refused = await http.get("/dashboard/inbox", params={"agent": "lead"}, headers=viewer)
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert (
            error["code"] == "forbidden" and "'lead'" in error["message"] and "'worker-*'" in error["message"]
        )
        assert "--role operator" in error["hint"] and "the lead's" not in refused.text
        for agent, role in (("ops", "operator"), ("boss", "all"), ("ops-*", "operator")):
            assert await bodies(http, bearer(agent, role), "lead") == ["the lead's, private"], role
    async with client(bus) as http:  # no tokens file: the loopback person sees every inbox
        assert await bodies(http, {}, "lead") == ["the lead's, private"]
