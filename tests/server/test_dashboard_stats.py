"""The dashboard's stats and inbox routes, in process on both backends: what they answer, that looking
at an inbox marks nothing read, and that they keep the dashboard's access rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import ClaimResult
from mcp_agentbus.server.dashboard import Dashboard
from mcp_agentbus.server.dashboard_stats import BODY_SHOWN
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


async def test_with_a_tokens_file_stats_and_inbox_need_a_token_and_a_foreign_host_is_refused(
    bus: AgentBus, tmp_path: Path
) -> None:
    tokens = TokensFile(tmp_path / "tokens.json")
    token, _ = tokens.create(namespace=bus.settings.namespace, agent="viewer", role="all")
    async with client(bus, tokens) as http:
        for path in ("/dashboard/stats", "/dashboard/inbox?agent=worker"):
            refused = await http.get(path)
            assert refused.status_code == 401, (path, refused.text)
            rebound = await http.get(path, headers={"Host": "evil.example"})
            assert rebound.status_code == 421, (path, rebound.text)
            allowed = await http.get(path, headers={"Authorization": f"Bearer {token}"})
            assert allowed.status_code == 200, (path, allowed.text)
