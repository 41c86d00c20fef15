"""Bearer tokens over HTTP, as deployments run them: two real server processes on one real Redis,
sharing one tokens file, and the SDK's own client (`streamable_http_client` with an httpx2 client that
sends ``Authorization: Bearer``) in both protocol eras.

The tokens file exists before the servers start, so both require a token on every /mcp request.
Every other token is made while they run, directly through `TokensFile` (fast) or through the real
CLI where that is the point, each for a namespace of its own: the servers re-read the file, so
tokens made or revoked meanwhile apply without a restart. The CLI's own checks are at the end.
"""

from __future__ import annotations

import json
import re
import stat
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest
from helpers import free_port
from helpers.commands import MODULE, assert_refused, run
from helpers.http_servers import (
    ERA,
    INIT,
    POST_HEADERS,
    SERVE,
    Server,
    bus_env,
    fresh,
    http_server,
    modern_call,
)
from helpers.mcp_session import WORKER_TOOLS, Bus, assert_tool_error
from helpers.subscriptions import ROOT, Watcher, on_updates, read_json, subscribe, subscribed
from helpers.tokens import assert_resource_refused, connect_as
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ResourceUpdated
from mcp.shared.exceptions import MCPError

from mcp_agentbus.cli import serve as cli
from mcp_agentbus.server.profiles import PROFILES
from mcp_agentbus.server.tokens import TOKEN_PREFIX, TokensFile, hash_token
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio

TIMEOUT = 30  # bound on one test's MCP traffic; every test finishes far sooner
LOCKS, WORKFLOWS, AGENTS, ALL_EVENTS = f"{ROOT}locks", f"{ROOT}workflows", f"{ROOT}agents", f"{ROOT}events/*"
TOKEN_RE = re.compile(r"^abt_[A-Za-z0-9_-]{43}$")


# --- the deployment: two processes, one Redis, one tokens file -----------------------------------------


@dataclass
class Deployment:
    a: Server
    b: Server
    tokens: TokensFile
    first: str  # made before the servers started

    def grant(self, agent: str, *, namespace: str, role: str = "all") -> str:
        token, _ = self.tokens.create(namespace=namespace, agent=agent, role=role)
        return token


@pytest.fixture(scope="module")
def deployment(redis_url_real: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("auth")
    path = workdir / "tokens.json"
    tokens = TokensFile(path)  # the file exists before the servers start: they require tokens
    first, _ = tokens.create(namespace=fresh("first"), agent="first-*", role="worker", note="before start")
    # The servers' own namespace and default agent are never what a token's calls use.
    env = {**bus_env(redis_url_real, fresh("server-own")), "AGENTBUS_TOKENS_FILE": str(path)}
    with http_server(env, workdir / "a.log") as a, http_server(env, workdir / "b.log") as b:
        yield Deployment(a, b, tokens, first)


@pytest.fixture
def dep(deployment: Deployment) -> Iterator[Deployment]:
    yield deployment
    deployment.a.assert_clean_log()
    deployment.b.assert_clean_log()


# --- clients ---------------------------------------------------------------------------------------


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


async def assert_sdk_refused(server: Server, mode: str, headers: dict[str, str]) -> None:
    """The SDK client cannot even open a session: every answer it got was a 401."""
    statuses: list[int] = []

    async def record(response: httpx2.Response) -> None:
        statuses.append(response.status_code)

    async with httpx2.AsyncClient(headers=headers, event_hooks={"response": [record]}) as http:
        with anyio.fail_after(TIMEOUT), pytest.raises((MCPError, BaseExceptionGroup)) as caught:
            async with Client(streamable_http_client(server.mcp, http_client=http), mode=mode):
                pytest.fail("a session was opened without a valid token")
    assert statuses and set(statuses) == {401}, statuses
    assert any(isinstance(leaf, MCPError) for leaf in leaves(caught.value)), caught.value


def assert_401(response: httpx2.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer"), response.headers
    assert response.json()["error"] == "invalid_token", response.text
    assert "mcp-session-id" not in response.headers


async def cli_async(*args: str) -> Any:
    """The real CLI, off the event loop (the client sessions keep running meanwhile)."""
    return await anyio.to_thread.run_sync(run, [*MODULE, *args])


# --- 401: no token, a bad one, a revoked one; /healthz stays open ------------------------------------


def test_healthz_needs_no_token(dep: Deployment) -> None:
    for server in (dep.a, dep.b):
        response = httpx2.get(server.healthz, timeout=5)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "ok"


async def test_requests_without_a_valid_token_are_401_before_any_tool_runs(dep: Deployment) -> None:
    namespace = fresh("raw")
    good = dep.grant("raw-*", namespace=namespace)
    refused = {
        "raw-none": None,
        "raw-bogus": "Bearer abt_bogus",
        "raw-altered": f"Bearer {good[:-1]}{'A' if good[-1] != 'A' else 'B'}",
        "raw-unprefixed": good,  # the token without the Bearer scheme
        "raw-basic": "Basic cmF3OnNlY3JldA==",
        "raw-token-scheme": f"Token {good}",
    }
    async with httpx2.AsyncClient(timeout=10) as http:
        for agent, authorization in refused.items():
            body, headers = modern_call("heartbeat", {"agent": agent})
            if authorization is not None:
                headers["Authorization"] = authorization
            for server in (dep.a, dep.b):
                assert_401(await http.post(server.mcp, json=body, headers=headers))
            # the legacy handshake is refused the same way, and gets no session
            assert_401(await http.post(dep.a.mcp, json=INIT, headers=headers))

        # A legacy session id is no credential: a call on a real session, without the token, is refused.
        opened = await http.post(
            dep.a.mcp, json=INIT, headers={**POST_HEADERS, "Authorization": f"Bearer {good}"}
        )
        assert opened.status_code == 200, opened.text
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": ERA["legacy"]}
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "heartbeat", "arguments": {"agent": "raw-session"}},
        }
        assert_401(await http.post(dep.a.mcp, json=call, headers={**POST_HEADERS, **session}))
        await http.delete(dep.a.mcp, headers={**session, "Authorization": f"Bearer {good}"})

        # the very same request with the token is served (so the refusals were about the token alone)
        body, headers = modern_call("heartbeat", {"agent": "raw-good"})
        served = await http.post(dep.b.mcp, json=body, headers={**headers, "Authorization": f"Bearer {good}"})
        assert served.status_code == 200, served.text
        assert "raw-good" in served.text

    with anyio.fail_after(TIMEOUT):
        async with connect_as(dep.a, "legacy", good) as bus:
            agents = await bus.ok("list_agents", {"include_gone": True})
    assert [a["agent"] for a in agents["agents"]] == ["raw-good"]  # no refused call ran


async def test_the_sdk_client_cannot_connect_without_a_valid_token(dep: Deployment, mode: str) -> None:
    await assert_sdk_refused(dep.a, mode, {})
    await assert_sdk_refused(dep.b, mode, {"Authorization": "Bearer abt_not-a-token"})


async def test_a_token_made_while_serving_works_at_once_and_a_revoked_one_is_refused_next_request(
    dep: Deployment, mode: str
) -> None:
    namespace = fresh("revoke")
    token, grant = dep.tokens.create(namespace=namespace, agent="w-1", role="all")
    observer = dep.grant("observer", namespace=namespace)
    statuses: list[int] = []
    with anyio.fail_after(TIMEOUT):
        async with (
            connect_as(dep.a, mode, token, statuses=statuses) as on_a,
            connect_as(dep.b, mode, token) as on_b,
        ):
            # made after both processes started: both accept it without a restart
            assert (await on_a.ok("heartbeat", {"status": "before"}))["agent"]["agent"] == "w-1"
            await on_b.ok("heartbeat", {"status": "before"})

            assert dep.tokens.revoke(grant.id) is not None
            with pytest.raises(MCPError):
                await on_a.call("heartbeat", {"status": "after revoke"})
            assert statuses[-1] == 401, statuses
            with pytest.raises(MCPError):
                await on_b.call("heartbeat", {"status": "after revoke"})

        async with httpx2.AsyncClient(timeout=10) as http:
            body, headers = modern_call("heartbeat", {"agent": "w-1", "status": "raw after revoke"})
            for server in (dep.a, dep.b):
                assert_401(
                    await http.post(
                        server.mcp, json=body, headers={**headers, "Authorization": f"Bearer {token}"}
                    )
                )

        async with connect_as(dep.b, mode, observer) as watching:
            [agent] = (await watching.ok("list_agents"))["agents"]
    assert agent["agent"] == "w-1" and agent["status"] == "before"  # no refused call changed anything


async def test_tokens_made_and_revoked_with_the_cli_apply_to_running_servers(dep: Deployment) -> None:
    namespace = fresh("cli-live")
    note = fresh("live")
    path = str(dep.tokens.path)
    made = await cli_async("token", "create", "--agent", "cli-*", "--namespace", namespace, "--role",
                           "worker", "--note", note, "--tokens-file", path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    [grant] = [g for g in dep.tokens.grants() if g.note == note]
    assert f"created {grant.id} " in made.stderr
    with anyio.fail_after(TIMEOUT):
        async with connect_as(dep.a, "legacy", token) as on_a, connect_as(dep.b, "auto", token) as on_b:
            assert {t.name for t in (await on_b.client.list_tools()).tools} == WORKER_TOOLS
            await on_a.ok("heartbeat", {"agent": "cli-1"})
            await on_b.ok("heartbeat", {"agent": "cli-2"})

            revoked = await cli_async("token", "revoke", grant.id, "--tokens-file", path)
            assert revoked.returncode == 0, revoked.stderr
            assert f"revoked {grant.id}" in revoked.stderr
            for bus in (on_a, on_b):
                with pytest.raises(MCPError):
                    await bus.call("heartbeat", {"agent": "cli-1"})
    assert note not in {g.note for g in dep.tokens.grants()}
    # and the token made before the servers started still works on both
    with anyio.fail_after(TIMEOUT):
        for server in (dep.a, dep.b):
            async with connect_as(server, "auto", dep.first) as bus:
                assert (await bus.ok("heartbeat", {"agent": "first-1"}))["agent"]["agent"] == "first-1"


# --- the grant: agents, default agent, role, namespace ---------------------------------------------


async def test_acting_as_an_agent_outside_the_glob_is_forbidden_and_changes_nothing(
    dep: Deployment, mode: str
) -> None:
    namespace = fresh("glob")
    boss = dep.grant("boss", namespace=namespace)
    workers = dep.grant("worker-*", namespace=namespace, role="worker,publish_event,read_events")
    with anyio.fail_after(TIMEOUT):
        async with connect_as(dep.a, mode, boss) as b, connect_as(dep.b, mode, workers) as w:
            created = await b.ok(
                "create_workflow", {"title": "guarded", "tasks": [{"key": "a", "title": "A"}]}
            )
            wf, task_id = created["workflow_id"], created["task_ids"]["a"]
            events_before = (await w.ok("read_events", {"after": "0"}))["events"]

            attempts: list[tuple[str, dict[str, Any], str]] = [
                ("heartbeat", {"agent": "mallory"}, "mallory"),
                ("claim_task", {"agent": "boss"}, "boss"),
                ("claim_task", {"agent": "worker"}, "worker"),  # the glob needs the '-'
                ("send_message", {"agent": "boss", "to": "worker-2", "body": "do it"}, "boss"),
                ("acquire_lock", {"agent": "boss", "resource": "src/app.py"}, "boss"),
                ("publish_event", {"agent": "boss", "topic": "deploy.go"}, "boss"),
                ("read_inbox", {"agent": "boss"}, "boss"),
                # a read names an agent only for its notices, and another agent's are not the token's
                ("get_workflow", {"agent": "boss"}, "boss"),
                ("read_events", {"agent": "boss"}, "boss"),
            ]
            for tool, args, who in attempts:
                error = await w.err(tool, args, "forbidden", who)
                assert "worker-*" in error["hint"], error

            # nothing happened: the task is still ready, no message, no lock, no event, no agent
            [task] = (await w.ok("get_workflow", {"workflow_id": wf}))["workflow"]["tasks"]
            assert task["state"] == "ready" and task["assignee"] is None
            assert (await w.ok("read_inbox", {"agent": "worker-2", "peek": True}))["messages"] == []
            assert await read_json(w.client, LOCKS) == {"locks": []}
            assert (await w.ok("read_events", {"after": "0"}))["events"] == events_before
            assert [a["agent"] for a in (await b.ok("list_agents", {"include_gone": True}))["agents"]] == []
            boss_inbox = await read_json(b.client, f"{ROOT}inbox/boss")
            assert boss_inbox["messages"] == []

            # a worker claims it; nobody outside the glob can finish it with its lease
            claim = await w.ok("claim_task", {"agent": "worker-1"})
            assert claim["task"]["id"] == task_id
            finish = {"task_id": task_id, "lease_token": claim["lease"]["lease_token"]}
            await w.err("complete_task", {**finish, "agent": "boss"}, "forbidden", "boss")
            await w.err("fail_task", {**finish, "agent": "boss", "error": "no"}, "forbidden", "boss")
            [task] = (await b.ok("get_workflow", {"workflow_id": wf}))["workflow"]["tasks"]
            assert task["state"] == "claimed" and task["assignee"] == "worker-1"
            done = await w.ok("complete_task", {**finish, "agent": "worker-1"})
            assert done["workflow_status"] == "done"


async def test_a_single_agent_token_acts_as_its_agent_by_default(dep: Deployment, mode: str) -> None:
    namespace = fresh("solo")
    solo = dep.grant("solo-1", namespace=namespace)
    many = dep.grant("worker-*", namespace=namespace)
    with anyio.fail_after(TIMEOUT):
        async with connect_as(dep.a, mode, solo) as one, connect_as(dep.b, mode, many) as glob:
            beat = await one.ok("heartbeat", {})
            assert beat["agent"]["agent"] == "solo-1"  # not the server's AGENTBUS_AGENT (http-default)
            created = await one.ok("create_task", {"title": "mine"})
            claim = await one.ok("claim_task", {})
            assert claim["task"]["id"] == created["task_id"]
            await one.ok(
                "complete_task", {"task_id": created["task_id"], "lease_token": claim["lease"]["lease_token"]}
            )
            await one.err("heartbeat", {"agent": "solo-2"}, "forbidden", "solo-2")

            # a glob names no one agent: a call must say which one it is
            for tool, args in [
                ("heartbeat", {}),
                ("claim_task", {}),
                ("send_message", {"to": "solo-1", "body": "hi"}),
            ]:
                error = await glob.err(tool, args, "unknown_agent", "agent")
                assert "worker-*" in error["hint"] and "agent" in error["hint"], error
            assert (await glob.ok("heartbeat", {"agent": "worker-7"}))["agent"]["agent"] == "worker-7"
            agents = await one.ok("list_agents", {"include_gone": True})
            unread = await read_json(one.client, f"{ROOT}inbox/solo-1")
    assert sorted(a["agent"] for a in agents["agents"]) == ["solo-1", "worker-7"]
    assert unread["messages"] == []


async def test_a_role_limits_the_tools_listed_and_callable(dep: Deployment, mode: str) -> None:
    namespace = fresh("role")
    worker = dep.grant("w-*", namespace=namespace, role="worker")
    coordinator = dep.grant("boss", namespace=namespace, role="coordinator")
    narrow = dep.grant("w-*", namespace=namespace, role="heartbeat,read_events")
    with anyio.fail_after(TIMEOUT):
        async with (
            connect_as(dep.a, mode, worker) as w,
            connect_as(dep.b, mode, coordinator) as c,
            connect_as(dep.a, mode, narrow) as n,
        ):
            assert {t.name for t in (await w.client.list_tools()).tools} == WORKER_TOOLS
            assert {t.name for t in (await c.client.list_tools()).tools} == set(PROFILES["coordinator"])
            assert {t.name for t in (await n.client.list_tools()).tools} == {"heartbeat", "read_events"}

            workflow: dict[str, Any] = {"title": "w", "tasks": [{"key": "a", "title": "A"}]}
            refused: list[tuple[str, dict[str, Any]]] = [
                ("create_workflow", {**workflow, "agent": "w-1"}),
                ("create_task", {"title": "t", "agent": "w-1"}),
                ("list_agents", {}),
            ]
            for tool, args in refused:
                error = await w.err(tool, args, "forbidden", tool, "worker")
                assert "claim_task" in error["hint"], error  # it says what the role may call
            await c.err("claim_task", {"agent": "boss"}, "forbidden", "claim_task", "coordinator")
            await n.err("claim_task", {"agent": "w-1"}, "forbidden", "claim_task")
            await n.err("get_workflow", {}, "forbidden", "get_workflow")

            # nothing was created by the refused calls; what each role allows works
            assert (await c.ok("get_workflow"))["workflows"] == []
            created = await c.ok("create_workflow", workflow)
            claim = await w.ok("claim_task", {"agent": "w-1"})
            assert claim["task"]["id"] == created["task_ids"]["a"]
            await n.ok("heartbeat", {"agent": "w-2"})
            assert (await n.ok("read_events", {"after": "0", "topics": ["task.claimed"]}))["events"]


async def test_a_token_sees_only_its_own_namespace(dep: Deployment, mode: str) -> None:
    ns_a, ns_b = fresh("ns-a"), fresh("ns-b")
    tok_a = dep.grant("w-*", namespace=ns_a)
    tok_b = dep.grant("w-*", namespace=ns_b)  # the very same agents, in another namespace
    with anyio.fail_after(TIMEOUT):
        async with connect_as(dep.a, mode, tok_a) as in_a, connect_as(dep.a, mode, tok_b) as in_b:
            created = await in_a.ok(
                "create_workflow",
                {
                    "agent": "w-1",
                    "title": "secret plan",
                    "tasks": [{"key": "a", "title": "A"}, {"key": "b", "title": "B"}],
                },
            )
            wf = created["workflow_id"]
            sent = await in_a.ok("send_message", {"agent": "w-1", "to": "w-2", "body": "A's secret"})
            await in_a.ok("acquire_lock", {"agent": "w-1", "resource": "src/shared.py"})
            await in_a.ok("publish_event", {"agent": "w-1", "topic": "build.failed", "data": {"ns": "a"}})
            await in_a.ok("heartbeat", {"agent": "w-1"})

            # B, in the same process, sees none of it: tools ...
            assert (await in_b.ok("read_events", {"after": "0"}))["events"] == []
            assert (await in_b.ok("list_agents", {"include_gone": True}))["agents"] == []
            assert (await in_b.ok("get_workflow"))["workflows"] == []
            await in_b.err("get_workflow", {"workflow_id": wf}, "not_found", wf)
            assert (await in_b.ok("read_inbox", {"agent": "w-2", "peek": True}))["messages"] == []
            # ... nor resources
            assert await read_json(in_b.client, WORKFLOWS) == {"workflow": None, "workflows": []}
            assert await read_json(in_b.client, LOCKS) == {"locks": []}
            assert await read_json(in_b.client, AGENTS) == {"agents": []}
            assert (await read_json(in_b.client, f"{ROOT}inbox/w-2"))["messages"] == []
            assert (await read_json(in_b.client, ALL_EVENTS))["events"] == []
            with pytest.raises(MCPError) as caught:
                await read_json(in_b.client, f"{WORKFLOWS}/{wf}")
            assert_resource_refused(caught.value, f"{WORKFLOWS}/{wf}", "not_found")

            # ... and cannot take A's work, read A's mail or be stopped by A's lock
            assert (await in_b.ok("claim_task", {"agent": "w-2"}))["task"] is None
            assert (await in_b.ok("read_inbox", {"agent": "w-2"}))["messages"] == []
            lock_b = await in_b.ok("acquire_lock", {"agent": "w-2", "resource": "src/shared.py"})
            assert lock_b["acquired"] is True
            assert [x["topic"] for x in (await in_b.ok("read_events", {"after": "0"}))["events"]] == [
                "lock.acquired"
            ]

        # A, through the other process, still has all of it, untouched by B
        async with connect_as(dep.b, mode, tok_a) as again:
            view = (await again.ok("get_workflow", {"workflow_id": wf}))["workflow"]
            assert view["title"] == "secret plan"
            assert {t["state"] for t in view["tasks"]} == {"ready"}
            unread = await again.ok("read_inbox", {"agent": "w-2", "peek": True})
            assert [m["id"] for m in unread["messages"]] == [sent["message_id"]]
            [lock] = (await read_json(again.client, LOCKS))["locks"]
            assert lock["resource"] == "src/shared.py" and lock["holder"] == "w-1"
            topics = [e["topic"] for e in (await again.ok("read_events", {"after": "0"}))["events"]]
            assert "build.failed" in topics and topics.count("lock.acquired") == 1


# --- resources and subscriptions ---------------------------------------------------------------------


async def test_an_inbox_outside_the_glob_cannot_be_read(dep: Deployment, mode: str) -> None:
    namespace = fresh("inbox")
    boss = dep.grant("boss", namespace=namespace)
    workers = dep.grant("worker-*", namespace=namespace, role="worker")
    with anyio.fail_after(TIMEOUT):
        async with connect_as(dep.a, mode, boss) as b, connect_as(dep.b, mode, workers) as w:
            await b.ok("send_message", {"to": "boss", "body": "a note to self"})
            await b.ok("send_message", {"to": "worker-1", "body": "for worker-1"})
            foreign = f"{ROOT}inbox/boss"
            with pytest.raises(MCPError) as caught:
                await read_json(w.client, foreign)
            assert_resource_refused(caught.value, foreign, "forbidden", "boss", "worker-*")
            assert "a note to self" not in caught.value.message
            own = await read_json(w.client, f"{ROOT}inbox/worker-1")
            assert [m["body"] for m in own["messages"]] == ["for worker-1"]
            assert len((await read_json(b.client, foreign))["messages"]) == 1  # the owner's token can


async def test_a_legacy_subscription_to_an_inbox_outside_the_glob_is_refused(dep: Deployment) -> None:
    namespace = fresh("sub")
    boss = dep.grant("boss", namespace=namespace)
    workers = dep.grant("worker-*", namespace=namespace, role="worker")
    watch = Watcher()
    with anyio.fail_after(TIMEOUT):
        async with (
            connect_as(dep.a, "legacy", boss) as b,
            connect_as(dep.a, "legacy", workers, message_handler=on_updates(watch)) as w,
        ):
            foreign, own = f"{ROOT}inbox/boss", f"{ROOT}inbox/worker-1"
            with pytest.raises(MCPError) as caught:
                await subscribe(w.client, foreign)
            assert_resource_refused(caught.value, foreign, "forbidden", "boss")
            await subscribe(w.client, own)  # the session can still subscribe to what it may read
            await b.ok("send_message", {"to": "boss", "body": "private"})
            await b.ok("send_message", {"to": "worker-1", "body": "hello"})
            await watch.expect(own)
            await watch.exactly()


async def test_a_listen_stream_is_never_told_of_an_inbox_outside_the_glob(dep: Deployment) -> None:
    namespace = fresh("listen-inbox")
    boss = dep.grant("boss", namespace=namespace)
    workers = dep.grant("worker-*", namespace=namespace, role="worker")
    foreign, own = f"{ROOT}inbox/boss", f"{ROOT}inbox/worker-1"
    watch = Watcher()
    refused: MCPError | None = None
    with anyio.fail_after(TIMEOUT):
        async with connect_as(dep.a, "auto", boss) as b, connect_as(dep.a, "auto", workers) as w:
            try:
                async with (
                    w.client.listen(resource_subscriptions=[foreign, own]) as stream,
                    anyio.create_task_group() as tg,
                ):

                    async def pump() -> None:
                        async for event in stream:
                            if isinstance(event, ResourceUpdated):
                                watch.note(event.uri)

                    tg.start_soon(pump)
                    await b.ok("send_message", {"to": "boss", "body": "private"})
                    await b.ok("send_message", {"to": "worker-1", "body": "hello"})
                    await watch.expect(own)
                    await watch.quiet()
                    tg.cancel_scope.cancel()
            except MCPError as exc:  # refusing the whole stream is a correct answer too
                refused = exc
    if refused is not None:
        assert isinstance(refused.data, dict) and refused.data["error"]["code"] == "forbidden", refused
    else:
        assert watch.seen[foreign] == 0, "a worker-* token's listen stream was told of boss's inbox"


async def test_subscribers_are_told_of_their_namespace_only(dep: Deployment, mode: str) -> None:
    ns_a, ns_b = fresh("push-a"), fresh("push-b")
    tok_a = dep.grant("w-*", namespace=ns_a)
    tok_b = dep.grant("w-*", namespace=ns_b)
    inbox = f"{ROOT}inbox/w-1"
    uris = [inbox, LOCKS, AGENTS, WORKFLOWS, ALL_EVENTS]
    watch = Watcher()
    handler = on_updates(watch) if mode == "legacy" else None
    with anyio.fail_after(TIMEOUT):
        async with (
            connect_as(dep.a, mode, tok_a, message_handler=handler) as watcher,
            connect_as(dep.a, "legacy", tok_b) as b_here,
            connect_as(dep.b, "auto", tok_b) as b_there,
            connect_as(dep.b, "auto", tok_a) as a_there,
            subscribed(watcher.client, mode, uris, watch),
        ):
            # every kind of change in B, through both processes, to the same agent and resource
            for bus in (b_here, b_there):
                await bus.ok("send_message", {"agent": "w-2", "to": "w-1", "body": "B's mail"})
                lock = await bus.ok("acquire_lock", {"agent": "w-1", "resource": "src/x.py"})
                await bus.ok(
                    "release_lock",
                    {"agent": "w-1", "resource": "src/x.py", "lock_token": lock["lock_token"]},
                )
                await bus.ok(
                    "create_workflow",
                    {"agent": "w-1", "title": "B", "tasks": [{"key": "a", "title": "A"}]},
                )
                await bus.ok("publish_event", {"agent": "w-1", "topic": "build.failed"})
                await bus.ok("heartbeat", {"agent": "w-1", "status": "busy"})
            await watch.exactly()  # not one notification

            # the same changes in A (through the other process) are heard, each once
            await a_there.ok("send_message", {"agent": "w-2", "to": "w-1", "body": "A's mail"})
            await watch.expect(inbox, ALL_EVENTS)
            await a_there.ok("acquire_lock", {"agent": "w-1", "resource": "src/x.py"})
            await watch.expect(LOCKS, AGENTS, ALL_EVENTS)
            await a_there.ok(
                "create_workflow", {"agent": "w-1", "title": "A", "tasks": [{"key": "a", "title": "A"}]}
            )
            await watch.expect(WORKFLOWS, ALL_EVENTS)
            await watch.exactly()
    assert watch.seen[inbox] == 1 and watch.seen[LOCKS] == 1


async def test_a_listen_stream_hears_its_namespace_before_anything_else_used_it(dep: Deployment) -> None:
    namespace = fresh("cold")
    token = dep.grant("w-*", namespace=namespace)
    inbox = f"{ROOT}inbox/w-1"
    watch = Watcher()
    heard = False
    with anyio.fail_after(TIMEOUT):
        async with (
            connect_as(dep.a, "auto", token) as listener,
            connect_as(dep.b, "auto", token) as sender,
            subscribed(listener.client, "auto", [inbox], watch),
        ):
            await sender.ok("send_message", {"agent": "w-2", "to": "w-1", "body": "first"})
            heard = await watch.another(inbox, within=1)
    assert heard, "the listen stream was never told of the message"


# --- two processes, one tokens file ------------------------------------------------------------------


async def test_workers_on_both_processes_race_for_tasks_under_auth(dep: Deployment) -> None:
    namespace = fresh("race")
    coordinator = dep.grant("boss", namespace=namespace, role="coordinator")
    workers = dep.grant("worker-*", namespace=namespace, role="worker")
    layout = [(server, mode) for server in (dep.a, dep.b) for mode in ("legacy", "auto", "legacy")]
    on_a = {f"worker-{i}" for i, (server, _) in enumerate(layout) if server is dep.a}
    claims: list[tuple[str, str]] = []
    go = anyio.Event()
    with anyio.fail_after(TIMEOUT):
        async with AsyncExitStack() as stack:
            boss = await stack.enter_async_context(connect_as(dep.a, "auto", coordinator))
            buses = [await stack.enter_async_context(connect_as(s, m, workers)) for s, m in layout]
            created = await boss.ok(
                "create_workflow",
                {"title": "race", "tasks": [{"key": f"t{i}", "title": f"T{i}"} for i in range(40)]},
            )

            async def worker(i: int, bus: Bus) -> None:
                me = f"worker-{i}"
                await go.wait()
                while True:
                    got = await bus.ok("claim_task", {"agent": me})
                    if got["task"] is None:
                        return
                    claims.append((got["task"]["id"], me))
                    lease = got["lease"]["lease_token"]
                    await bus.ok(
                        "complete_task", {"agent": me, "task_id": got["task"]["id"], "lease_token": lease}
                    )

            async with anyio.create_task_group() as tg:
                for i, bus in enumerate(buses):
                    tg.start_soon(worker, i, bus)
                go.set()
            view = (await boss.ok("get_workflow", {"workflow_id": created["workflow_id"]}))["workflow"]

    assert Counter(task_id for task_id, _ in claims) == Counter(created["task_ids"].values())
    assert view["status"] == "done" and view["progress"]["done"] == 40
    by_id = dict(claims)
    assert all(task["assignee"] == by_id[task["id"]] for task in view["tasks"])
    taken_on_a = sum(1 for _, who in claims if who in on_a)
    assert 0 < taken_on_a < 40, Counter(who for _, who in claims)  # both processes took part


# --- bad input, with auth: the same clear errors as over stdio ---------------------------------------


async def test_bad_input_gets_the_same_clear_errors_with_a_token(dep: Deployment, mode: str) -> None:
    token = dep.grant("w-*", namespace=fresh("bad"))
    with anyio.fail_after(TIMEOUT):
        async with connect_as(dep.a, mode, token) as bus:
            assert_tool_error(
                await bus.call("claim_task", {"agent": "w-1", "lease_seconds": 0}),
                "invalid_argument",
                "lease_seconds",
            )
            assert_tool_error(
                await bus.call("claim_task", {"agent": "w-1", "wait": 1}), "invalid_argument", "wait"
            )
            assert_tool_error(await bus.call("delete_everything", {}), "not_found", "delete_everything")
            await bus.err(
                "complete_task", {"agent": "w-1", "task_id": "t-999999", "lease_token": "x"}, "not_found"
            )
            with pytest.raises(MCPError) as caught:
                await read_json(bus.client, f"{ROOT}inbox/-bad")
            assert_resource_refused(caught.value, f"{ROOT}inbox/-bad", "invalid_argument")
            # the session is fine after all that
            assert (await bus.ok("claim_task", {"agent": "w-1"}))["task"] is None


# --- the CLI -----------------------------------------------------------------------------------------


def test_token_create_prints_only_the_token_and_stores_only_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "tokens.json"
    made = run([*MODULE, "token", "create", "--agent", "worker-*", "--namespace", "proj",
                "--role", "worker", "--note", "ci runners", "--tokens-file", str(path)])  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.count("\n") == 1 and TOKEN_RE.match(made.stdout.strip()), made.stdout
    token = made.stdout.strip()
    assert token.startswith(TOKEN_PREFIX) and token not in made.stderr
    assert "tok-" in made.stderr and "proj" in made.stderr and "'worker-*'" in made.stderr
    assert "only now" in made.stderr

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    other, _ = TokensFile(path).create(namespace="proj", agent="boss", role="coordinator")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # still, after it was replaced
    text = path.read_text()
    assert token not in text and other not in text and TOKEN_PREFIX not in text
    grants = json.loads(text)["tokens"]
    assert [g["sha256"] for g in grants] == [hash_token(token), hash_token(other)]
    first = grants[0]
    assert (first["namespace"], first["agent"], first["role"], first["note"]) == (
        "proj",
        "worker-*",
        "worker",
        "ci runners",
    )
    assert first["id"] in made.stderr
    assert [p.name for p in path.parent.iterdir()] == ["tokens.json"]  # no temporary file left behind

    listed = run([*MODULE, "token", "list", "--tokens-file", str(path)])
    assert listed.returncode == 0, listed.stderr
    assert TOKEN_PREFIX not in listed.stdout + listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [g["id"] for g in grants]
    assert "note=ci runners" in listed.stdout and "agent=worker-*" in listed.stdout
    assert all(g["sha256"] not in listed.stdout for g in grants)


def test_the_cli_refuses_clearly_with_exit_2(redis_url_real: str, tmp_path: Path) -> None:
    """An unknown role, revoking an unknown id, and serving a non-loopback address without tokens
    (which fails before binding anything). The three commands run side by side: each takes a while."""
    path = tmp_path / "tokens.json"
    TokensFile(path).create(namespace="proj", agent="w-*", role="worker")
    before = path.read_text()
    absent = tmp_path / "absent" / "tokens.json"
    serve_env = {**bus_env(redis_url_real, fresh("open")), "AGENTBUS_TOKENS_FILE": str(absent)}
    commands: list[tuple[list[str], dict[str, str]]] = [
        (
            [*MODULE, "token", "create", "--agent", "w-*", "--role", "nonsense", "--tokens-file", str(path)],
            {},
        ),
        ([*MODULE, "token", "revoke", "tok-nope", "--tokens-file", str(path)], {}),
        ([*SERVE, "--transport", "http", "--host", "0.0.0.0", "--port", str(free_port())], serve_env),
    ]
    with ThreadPoolExecutor(len(commands)) as pool:
        nonsense, unknown, served = pool.map(lambda c: run(c[0], **c[1]), commands)

    assert nonsense.returncode == 2, nonsense.stderr
    assert_refused(nonsense, "--role", "nonsense", "worker", "coordinator")

    assert unknown.returncode == 2, unknown.stderr
    assert_refused(unknown, "there is no token tok-nope", "token list")
    assert path.read_text() == before  # neither changed the file

    assert served.returncode == 2, served.stderr
    assert_refused(served, "0.0.0.0", "agentbus token create", "--unsafe-no-auth")
    assert "serving MCP" not in served.stderr
    assert not absent.exists()


def test_http_auth_accepts_a_non_loopback_host_once_a_tokens_file_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.json"
    settings = Settings(redis_url="memory://", tokens_file=path)
    with pytest.raises(SystemExit) as exited:
        cli.http_auth(settings, "0.0.0.0", False)
    assert exited.value.code == 2
    assert "agentbus token create" in capsys.readouterr().err

    TokensFile(path).create(namespace="proj", agent="w-*", role="worker")
    tokens = cli.http_auth(settings, "0.0.0.0", False)
    assert tokens is not None and tokens.path == path and len(tokens.grants()) == 1
    assert cli.http_auth(settings, "127.0.0.1", False) is not None  # loopback requires them too
    assert capsys.readouterr().err == ""

    # --unsafe-no-auth turns tokens off, loudly
    assert cli.http_auth(settings, "0.0.0.0", True) is None
    assert "WARNING" in capsys.readouterr().err

    # a damaged file is refused rather than taken as "no tokens"
    path.write_text('{"tokens": [{"id": "x"}]}')
    with pytest.raises(SystemExit) as exited:
        cli.http_auth(settings, "0.0.0.0", False)
    assert exited.value.code == 2
    assert "damaged" in capsys.readouterr().err
