"""The dashboard's action routes (``dashboard_actions.py``) on both backends, served in process through
the dashboard's own access checks: who may act, what a bad request gets (nothing written), and what each
action does through the core — the same scripts and events as the tools."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.errors import LeaseLost
from mcp_agentbus.server.dashboard import Dashboard
from mcp_agentbus.server.dashboard_actions import MAX_ACTION_BYTES
from mcp_agentbus.server.http import LOOPBACK_HOSTS
from mcp_agentbus.server.tokens import TokensFile

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
ACTIONS = {
    "message": {"to": "worker-1", "body": "hello"},
    "cancel": {"task_id": "t-1", "reason": "not needed"},
    "retry": {"task_id": "t-1", "reason": "try again"},
    "release": {"resource": "src/app.py"},
}

Client = Callable[..., Any]


@asynccontextmanager
async def dashboard(bus: AgentBus, tokens: TokensFile | None = None) -> AsyncIterator[httpx2.AsyncClient]:
    """An HTTP client to the dashboard of `bus`'s namespace (tokens required when `tokens` is given)."""

    async def bus_for(namespace: str) -> AgentBus | None:
        return bus if namespace == bus.settings.namespace else None

    security = TransportSecuritySettings(
        allowed_hosts=list(LOOPBACK_HOSTS), allowed_origins=[f"http://{host}" for host in LOOPBACK_HOSTS]
    )
    app = Starlette(routes=Dashboard(bus.settings.namespace, bus_for, security, tokens).routes())
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as http:
        yield http


@pytest.fixture
def tokens(tmp_path: Path) -> TokensFile:
    return TokensFile(tmp_path / "tokens.json")


def bearer(tokens: TokensFile, bus: AgentBus, agent: str, role: str) -> dict[str, str]:
    token, _ = tokens.create(namespace=bus.settings.namespace, agent=agent, role=role)
    return {"Authorization": f"Bearer {token}"}


async def topics(bus: AgentBus) -> list[tuple[str, str | None]]:
    return [(e.topic, e.agent) for e in (await bus.events.recent("*")).events]


async def claimed_task(bus: AgentBus, agent: str = "worker-2") -> tuple[str, str]:
    created = await bus.tasks.create("planner", title="draft")
    claim = await bus.tasks.claim(agent, task_id=created.task_id)
    assert claim.task is not None and claim.lease is not None
    return claim.task.id, claim.lease.lease_token


# --- who may act --------------------------------------------------------------------------------------


async def test_a_viewer_token_may_view_but_not_act_and_is_told_which_role_acts(
    bus: AgentBus, tokens: TokensFile
) -> None:
    viewer = bearer(tokens, bus, "worker-*", "worker")
    async with dashboard(bus, tokens) as http:
        me = (await http.get("/dashboard/access", headers=viewer)).json()
        assert me["namespace"] == bus.settings.namespace
        assert (me["token"]["role"], me["may_act"], me["acts_as"]) == ("worker", False, "human")
        assert (await http.get("/dashboard/snapshot", headers=viewer)).status_code == 200
        for name, body in ACTIONS.items():
            refused = await http.post(f"/dashboard/actions/{name}", json=body, headers=viewer)
            assert refused.status_code == 403, (name, refused.text)
            error = refused.json()["error"]
            assert error["code"] == "forbidden" and "'worker'" in error["message"]
            assert "operator or all" in error["hint"] and "--role operator" in error["hint"]
    assert await topics(bus) == []


async def test_operator_and_all_tokens_may_act_and_say_whom_they_act_as(
    bus: AgentBus, tokens: TokensFile
) -> None:
    async with dashboard(bus, tokens) as http:
        for agent, role, acts_as in (("alice", "operator", "alice"), ("ops-*", "operator", "human"),
                                     ("boss", "all", "boss")):  # fmt: skip
            me = (await http.get("/dashboard/access", headers=bearer(tokens, bus, agent, role))).json()
            assert (me["token"]["role"], me["may_act"], me["acts_as"]) == (role, True, acts_as)
    async with dashboard(bus) as http:  # no tokens file: loopback only, as human
        me = (await http.get("/dashboard/access")).json()
        assert (me["token"], me["may_act"], me["acts_as"]) == (None, True, "human")


async def test_an_action_needs_a_json_content_type_and_a_bounded_body(bus: AgentBus) -> None:
    async with dashboard(bus) as http:
        form = await http.post("/dashboard/actions/message", data={"to": "worker-1", "body": "hi"})
        assert form.status_code == 415, form.text
        assert form.json()["error"]["code"] == "unsupported_media_type"
        plain = await http.post(
            "/dashboard/actions/message",
            content=b'{"to": "w", "body": "hi"}',
            headers={"Content-Type": "text/plain"},
        )
        assert plain.status_code == 415
        huge = await http.post("/dashboard/actions/message", json={"to": "w", "body": "x" * MAX_ACTION_BYTES})
        assert huge.status_code == 413 and huge.json()["error"]["code"] == "payload_too_large"
        foreign = await http.post(
            "/dashboard/actions/message", json=ACTIONS["message"], headers={"Origin": "http://evil.example"}
        )
        assert foreign.status_code == 403
    assert await topics(bus) == []


@pytest.mark.parametrize(
    ("name", "body", "said"),
    [
        ("message", {"to": "worker-1"}, "body: Field required"),
        ("message", {"to": "not an id", "body": "hi"}, "to: String should match pattern"),
        ("message", {"to": "worker-1", "body": ""}, "body: String should have at least 1 character"),
        ("message", {"to": "worker-1", "body": "hi", "from": "boss"}, "from: Extra inputs are not permitted"),
        ("cancel", {"task_id": "t-1", "workflow_id": "wf-1", "reason": "x"}, "exactly one of task_id"),
        ("cancel", {"task_id": "t-1"}, "reason: Field required"),
        ("retry", {"task_id": "wf-1", "reason": "x"}, "task_id: String should match pattern"),
        ("release", {}, "resource: Field required"),
        ("release", [], "Input should be an object"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(
    bus: AgentBus, name: str, body: Any, said: str
) -> None:
    async with dashboard(bus) as http:
        refused = await http.post(f"/dashboard/actions/{name}", json=body)
        broken = await http.post(
            f"/dashboard/actions/{name}", content=b"{not json", headers={"Content-Type": "application/json"}
        )
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_argument" and said in error["message"], error
    assert error["hint"].startswith("Send a JSON object with")
    assert broken.status_code == 400 and "Invalid JSON" in broken.json()["error"]["message"]
    assert await topics(bus) == []


# --- what each action does ----------------------------------------------------------------------------


async def test_a_message_goes_as_human_without_tokens_and_as_the_operator_id_with_one(
    bus: AgentBus, tokens: TokensFile
) -> None:
    async with dashboard(bus) as http:
        sent = await http.post("/dashboard/actions/message", json={"to": "worker-1", "body": "stop at 5"})
    assert sent.status_code == 200, sent.text
    assert sent.json()["ok"] is True and sent.json()["line"].startswith("Sent to worker-1 as human (message ")
    alice = bearer(tokens, bus, "alice", "operator")
    async with dashboard(bus, tokens) as http:
        thread = (await bus.inbox.read("worker-1", peek=True)).messages[0].thread_id
        again = await http.post(
            "/dashboard/actions/message",
            json={"to": "worker-1", "body": "and rest", "thread_id": thread},
            headers=alice,
        )
        assert again.status_code == 200, again.text
    got = (await bus.inbox.read("worker-1")).messages
    assert [(m.sender, m.body, m.thread_id) for m in got] == [
        ("human", "stop at 5", thread),
        ("alice", "and rest", thread),
    ]
    assert [t for t in await topics(bus) if t[0] == "message.sent"] == [
        ("message.sent", "human"),
        ("message.sent", "alice"),
    ]


async def test_cancel_takes_the_lease_from_the_holder_and_retry_runs_the_task_again(bus: AgentBus) -> None:
    task_id, lease = await claimed_task(bus)
    async with dashboard(bus) as http:
        cancelled = await http.post(
            "/dashboard/actions/cancel", json={"task_id": task_id, "reason": "wrong plan"}
        )
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["line"] == (
            f"Cancelled task {task_id} as human: 1 task(s) cancelled ({task_id}); "
            "any holder lost its lease at once."
        )
        with pytest.raises(LeaseLost):
            await bus.tasks.complete("worker-2", task_id, lease, result={"ok": True})
        retried = await http.post(
            "/dashboard/actions/retry", json={"task_id": task_id, "reason": "plan fixed"}
        )
        assert retried.status_code == 200, retried.text
        assert retried.json()["line"] == f"Task {task_id} is ready again (retried as human)."
        unknown = await http.post("/dashboard/actions/retry", json={"task_id": "t-999999", "reason": "x"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
        wrong = await http.post("/dashboard/actions/retry", json={"task_id": task_id, "reason": "again"})
        assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "wrong_state"
    seen = await topics(bus)
    assert ("task.cancelled", "human") in seen and ("task.retried", "human") in seen, seen


async def test_cancel_of_a_workflow_cancels_its_unfinished_tasks(bus: AgentBus) -> None:
    created = await bus.workflows.create(
        "planner",
        title="ship",
        tasks=[{"key": "a", "title": "A"}, {"key": "b", "title": "B", "depends_on": ["a"]}],
    )
    async with dashboard(bus) as http:
        done = await http.post(
            "/dashboard/actions/cancel", json={"workflow_id": created.workflow_id, "reason": "dropped"}
        )
    assert done.status_code == 200, done.text
    assert done.json()["line"].startswith(
        f"Cancelled workflow {created.workflow_id} as human: 2 task(s) cancelled"
    )
    view = (await bus.workflows.get(created.workflow_id)).workflow
    assert view is not None and view.status == "cancelled"


async def test_release_revokes_the_lock_tells_its_holder_and_writes_its_event(
    bus: AgentBus, tokens: TokensFile
) -> None:
    held = await bus.locks.acquire("worker-2", "src/app.py", ttl_seconds=60)
    ops = bearer(tokens, bus, "ops", "operator")
    async with dashboard(bus, tokens) as http:
        done = await http.post("/dashboard/actions/release", json={"resource": "./src//app.py"}, headers=ops)
        assert done.status_code == 200, done.text  # named as the lock is, however it was spelled
        assert done.json()["line"] == (
            f"Released the lock on src/app.py held by worker-2 (fencing token {held.fencing_token}); "
            "worker-2 is told on its next call."
        )
        gone = await http.post("/dashboard/actions/release", json={"resource": "src/app.py"}, headers=ops)
        assert gone.status_code == 404 and "no lock is held on src/app.py" in gone.json()["error"]["message"]
    assert (await bus.locks.held()).locks == []
    assert ("lock.revoked", "ops") in await topics(bus)
