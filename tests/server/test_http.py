"""`agentbus serve --transport http` as deployments run it: real server processes on a real Redis.

Each server is a subprocess on a free loopback port, waited for by polling ``/healthz`` and terminated
when its test (or this module) is done; the clients are the SDK's own `mcp.Client` over
`streamable_http_client`, in both protocol eras (`legacy` = the 2025-11-25 initialize handshake that
Claude Code speaks, `auto` = 2026-07-28). Two processes on one Redis and namespace behave as one bus:
claims, locks and inbox notifications are raced and watched across them.
"""

from __future__ import annotations

import itertools
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from helpers import free_port
from helpers.examples import stop
from helpers.http_servers import (
    INIT,
    POST_HEADERS,
    SERVE,
    Server,
    bus_env,
    connect,
    fresh,
    http_server,
    post_initialize,
    throwaway_redis,
)
from helpers.mcp_session import ALL_TOOLS, Bus, assert_tool_error
from helpers.subscriptions import Watcher, on_updates, subscribed

pytestmark = pytest.mark.anyio

TIMEOUT = 30  # bound on one test's MCP traffic; every test finishes far sooner


# --- server processes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(redis_url_real: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """Two server processes on one Redis and one namespace (A also accepts Host bus.example:*)."""
    env = bus_env(redis_url_real, f"http-{uuid.uuid4().hex[:12]}")
    logs = tmp_path_factory.mktemp("http")
    with (
        http_server(env, logs / "a.log", "--allowed-host", "bus.example:*") as a,
        http_server(env, logs / "b.log") as b,
    ):
        yield a, b


@pytest.fixture
def a(pair: tuple[Server, Server]) -> Iterator[Server]:
    yield pair[0]
    pair[0].assert_clean_log()


@pytest.fixture
def b(pair: tuple[Server, Server]) -> Iterator[Server]:
    yield pair[1]
    pair[1].assert_clean_log()


# --- clients ---------------------------------------------------------------------------------------


Progress = list[tuple[float, float | None, str | None]]


# --- both eras over HTTP ---------------------------------------------------------------------------


async def test_tools_round_trip_over_http(a: Server, mode: str) -> None:
    coder, cap = fresh("coder"), fresh("cap")
    with anyio.fail_after(TIMEOUT):
        async with connect(a, mode) as bus:
            assert bus.client.server_info is not None and bus.client.server_info.name == "agentbus"
            assert {t.name for t in (await bus.client.list_tools()).tools} == ALL_TOOLS

            me = await bus.ok("heartbeat")  # no agent argument: the process's AGENTBUS_AGENT
            assert me["agent"]["agent"] == "http-default"
            beat = await bus.ok("heartbeat", {"agent": coder, "capabilities": [cap]})
            assert beat["agent"]["capabilities"] == [cap]

            created = await bus.ok(
                "create_task", {"title": "over http", "capability": cap, "payload": {"n": 1}}
            )
            assert created["state"] == "ready"
            claim = await bus.ok("claim_task", {"agent": coder, "capabilities": [cap]})
            assert claim["task"]["id"] == created["task_id"] and claim["task"]["payload"] == {"n": 1}
            done = await bus.ok(
                "complete_task",
                {
                    "agent": coder,
                    "task_id": created["task_id"],
                    "lease_token": claim["lease"]["lease_token"],
                    "result": {"ok": True},
                },
            )
            assert done["task_id"] == created["task_id"]
            nothing = await bus.ok("claim_task", {"agent": coder, "capabilities": [cap]})
            assert nothing["task"] is None

            # bad input: the same structured tool errors as over stdio and in memory
            assert_tool_error(
                await bus.call("claim_task", {"agent": coder, "lease_seconds": 0}),
                "invalid_argument",
                "lease_seconds",
            )
            assert_tool_error(await bus.call("delete_everything", {}), "not_found", "delete_everything")
            assert_tool_error(await bus.call("claim_task", {"wait": 1}), "invalid_argument", "wait")


async def test_waiting_read_over_http_is_woken_from_the_other_process(
    a: Server, b: Server, mode: str
) -> None:
    reader, sender = fresh("reader"), fresh("sender")
    updates: Progress = []
    waiting = anyio.Event()
    got: dict[str, Any] = {}

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))
        waiting.set()

    with anyio.fail_after(TIMEOUT):
        async with connect(a, mode) as on_a, connect(b, mode) as on_b:

            async def wait_for_mail() -> None:
                got["read"] = await on_a.ok(
                    "read_inbox", {"agent": reader, "wait_seconds": 5}, progress_callback=on_progress
                )

            async with anyio.create_task_group() as tg:
                started = anyio.current_time()
                tg.start_soon(wait_for_mail)
                await waiting.wait()  # the read is waiting on the server (it reported progress)
                sent = await on_b.ok("send_message", {"agent": sender, "to": reader, "body": "wake up"})
            woken_after = anyio.current_time() - started

    [message] = got["read"]["messages"]
    assert message["id"] == sent["message_id"] and message["from"] == sender and message["body"] == "wake up"
    assert woken_after < 4.5  # woken by the send, not by the 5 s wait running out
    for progress, total, _ in updates:
        assert total == 5 and 0 <= progress <= total


async def test_progress_arrives_during_a_wait_over_http(a: Server, mode: str) -> None:
    updates: Progress = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    with anyio.fail_after(TIMEOUT):
        async with connect(a, mode) as bus:
            result = await bus.ok(
                "read_inbox", {"agent": fresh("idle"), "wait_seconds": 1.5}, progress_callback=on_progress
            )
    assert result["messages"] == []
    assert updates, "no progress notification arrived during a 1.5 s wait over HTTP"
    progresses = [p for p, _, _ in updates]
    assert progresses == sorted(progresses) and len(set(progresses)) == len(progresses)
    for progress, total, message in updates:
        assert total == 1.5 and 0 <= progress <= total
        assert message and "waiting for a message" in message


# --- /healthz --------------------------------------------------------------------------------------


def test_healthz_is_ok_with_a_live_redis(a: Server) -> None:
    response = httpx2.get(a.healthz, timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["redis"] == "ok"
    assert isinstance(body["version"], str) and body["version"]


async def test_redis_going_away_is_503_and_backend_unavailable_and_the_process_stays_up(
    tmp_path: Path,
) -> None:
    async with httpx2.AsyncClient(timeout=5) as http:
        with (
            throwaway_redis(tmp_path) as (redis_proc, url),
            http_server(bus_env(url, fresh("gone")), tmp_path / "server.log") as server,
        ):
            redis_port = url.split(":")[2].split("/")[0]
            with anyio.fail_after(TIMEOUT):
                healthy = await http.get(server.healthz)
                assert healthy.status_code == 200 and healthy.json()["status"] == "ok"
                async with connect(server, "legacy") as bus:
                    await bus.ok("heartbeat", {"agent": "survivor"})

                    stop(redis_proc)  # Redis goes away under a running server

                    down = await http.get(server.healthz)
                    assert down.status_code == 503
                    body = down.json()
                    assert body == {"status": "unavailable", "redis": "Redis is unreachable"}, body

                    with anyio.fail_after(15):
                        refused = await bus.call("create_task", {"title": "t"})
                        error = assert_tool_error(refused, "backend_unavailable", "unreachable")
                    assert redis_port not in error["message"]  # the host is for the log, not for agents
                    # the protocol side keeps working, and bad input is still reported as such
                    assert {t.name for t in (await bus.client.list_tools()).tools} == ALL_TOOLS
                    assert_tool_error(
                        await bus.call("claim_task", {"lease_seconds": 0}),
                        "invalid_argument",
                        "lease_seconds",
                    )

                # still up: it answers, still 503, and a new session can be opened
                assert server.proc.poll() is None
                again = await http.get(server.healthz)
                assert again.status_code == 503 and again.json()["status"] == "unavailable"
                async with connect(server, "auto") as bus:
                    assert_tool_error(await bus.call("heartbeat", {}), "backend_unavailable")
                assert server.proc.poll() is None
    log = server.log.read_text()
    assert "Traceback" not in log
    assert f"127.0.0.1:{redis_port}" in log  # where the detail is


# --- Host checks (DNS rebinding) -------------------------------------------------------------------


def test_a_forged_host_is_refused(a: Server, b: Server) -> None:
    for server in (a, b):
        refused = post_initialize(server, "evil.example:1234")
        assert refused.status_code == 421, refused.text
        assert refused.text == "Invalid Host header"
        assert "mcp-session-id" not in refused.headers
    # B was not told about bus.example: it refuses it too
    assert post_initialize(b, "bus.example:443").status_code == 421


def test_a_foreign_origin_is_refused(a: Server) -> None:
    """What a DNS-rebinding page in a browser sends: a loopback Host but its own Origin."""
    headers = {**POST_HEADERS, "Origin": "http://evil.example"}
    refused = httpx2.post(a.mcp, json=INIT, headers=headers, timeout=5)
    assert refused.status_code == 403, refused.text
    assert refused.text == "Invalid Origin header"
    own = httpx2.post(a.mcp, json=INIT, headers={**POST_HEADERS, "Origin": a.base}, timeout=5)
    assert own.status_code == 200, own.text
    httpx2.delete(a.mcp, headers={"mcp-session-id": own.headers["mcp-session-id"]}, timeout=5)


@pytest.mark.parametrize(
    "host", ["127.0.0.1:{port}", "localhost:{port}", "bus.example:443", "bus.example:8080"]
)
def test_loopback_and_allowed_hosts_get_past_the_host_check(a: Server, host: str) -> None:
    response = post_initialize(a, host.format(port=a.port))
    assert response.status_code == 200, response.text
    assert response.headers["mcp-session-id"]
    assert '"serverInfo"' in response.text and '"agentbus"' in response.text
    # the session is left for the server to forget; end it cleanly
    headers = {"Host": host.format(port=a.port), "mcp-session-id": response.headers["mcp-session-id"]}
    httpx2.delete(a.mcp, headers=headers, timeout=5)


def test_an_allowed_host_pattern_covers_the_default_port(a: Server) -> None:
    response = post_initialize(a, "bus.example")
    assert response.status_code != 421, response.text


def test_an_allowed_host_pattern_covers_the_default_port_origin(a: Server) -> None:
    headers = {**POST_HEADERS, "Host": "bus.example:443", "Origin": "https://bus.example"}
    response = httpx2.post(a.mcp, json=INIT, headers=headers, timeout=5)
    assert response.status_code != 403, response.text


def test_a_legacy_session_lives_in_the_process_that_created_it(a: Server, b: Server) -> None:
    """Why the README asks for sticky routing (or --stateless): B does not know A's sessions."""
    created = post_initialize(a)
    session = created.headers["mcp-session-id"]
    headers = {**POST_HEADERS, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    elsewhere = httpx2.post(b.mcp, json=call, headers=headers, timeout=5)
    assert elsewhere.status_code == 404, elsewhere.text
    at_home = httpx2.post(a.mcp, json=call, headers=headers, timeout=5)
    assert at_home.status_code == 200 and '"claim_task"' in at_home.text, at_home.text
    httpx2.delete(a.mcp, headers={"mcp-session-id": session}, timeout=5)


def test_healthz_answers_whatever_the_host(a: Server) -> None:
    """Load balancers probe by address; /healthz is outside the MCP endpoint's host check."""
    assert httpx2.get(a.healthz, headers={"Host": "evil.example:1234"}, timeout=5).status_code == 200


# --- the CLI guard ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7"])
def test_a_non_loopback_address_is_refused_without_unsafe_no_auth(redis_url_real: str, host: str) -> None:
    port = free_port()
    env = bus_env(redis_url_real, fresh("guard"))
    run = subprocess.run(
        [*SERVE, "--transport", "http", "--host", host, "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    assert host in run.stderr and "--unsafe-no-auth" in run.stderr, run.stderr
    assert "127.0.0.1" in run.stderr  # the way forward: loopback behind a proxy
    assert "serving MCP" not in run.stderr and "Traceback" not in run.stderr
    assert run.stdout == ""
    with pytest.raises(httpx2.ConnectError):  # nothing listens on the port
        httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_an_unreachable_redis_at_start_exits_2_over_http(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    port = free_port()
    run = subprocess.run(
        [*SERVE, "--transport", "http", "--host", "127.0.0.1", "--port", str(port)],
        env=bus_env(dead, fresh("dead")),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 2, run.stderr
    assert "cannot reach Redis" in run.stderr and dead.removesuffix("/0") in run.stderr, run.stderr
    assert "serving MCP" not in run.stderr and "Traceback" not in run.stderr


# --- scale-out: two processes, one bus -------------------------------------------------------------


@asynccontextmanager
async def clients(servers: list[tuple[Server, str]]) -> AsyncIterator[list[Bus]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(connect(server, mode)) for server, mode in servers]


async def test_claim_race_across_two_processes_claims_every_task_once(a: Server, b: Server) -> None:
    cap = fresh("race")
    # 8 clients, 4 per process, both eras on each
    layout = [(server, mode) for server in (a, b) for mode in ("legacy", "auto", "legacy", "auto")]
    claims: list[tuple[str, str]] = []  # (task id, worker)
    on_a_workers = {f"w{i}-{cap}" for i, (server, _) in enumerate(layout) if server is a}
    go = anyio.Event()
    with anyio.fail_after(TIMEOUT):
        async with clients(layout) as buses:
            created = await buses[0].ok(
                "create_workflow",
                {
                    "title": "race",
                    "tasks": [{"key": f"t{i}", "title": f"T{i}", "capability": cap} for i in range(60)],
                },
            )
            assert len(created["ready"]) == 60

            async def worker(i: int, bus: Bus) -> None:
                me = f"w{i}-{cap}"
                await go.wait()
                while True:
                    got = await bus.ok("claim_task", {"agent": me, "capabilities": [cap]})
                    if got["task"] is None:
                        return
                    claims.append((got["task"]["id"], me))
                    await bus.ok(
                        "complete_task",
                        {
                            "agent": me,
                            "task_id": got["task"]["id"],
                            "lease_token": got["lease"]["lease_token"],
                            "result": me,
                        },
                    )

            async with anyio.create_task_group() as tg:
                for i, bus in enumerate(buses):
                    tg.start_soon(worker, i, bus)
                go.set()
            view = await buses[5].ok("get_workflow", {"workflow_id": created["workflow_id"]})

    ids = [task_id for task_id, _ in claims]
    assert Counter(ids) == Counter(created["task_ids"].values())  # every task claimed exactly once
    workflow = view["workflow"]
    assert workflow["status"] == "done" and workflow["progress"]["done"] == 60
    by_id = dict(claims)
    for task in workflow["tasks"]:
        assert task["state"] == "done" and task["assignee"] == by_id[task["id"]] == task["result"]
    on_a = sum(1 for _, worker in claims if worker in on_a_workers)
    assert 0 < on_a < 60, Counter(worker for _, worker in claims)  # both processes took part


async def test_one_lock_across_two_processes_is_never_held_twice(a: Server, b: Server) -> None:
    resource = f"src/{fresh('app')}.py"  # `src/app.py`, in a namespace other tests share
    layout = [(a if i % 2 == 0 else b, "legacy" if i % 4 < 2 else "auto") for i in range(10)]
    holding = 0
    most_at_once = 0
    grants: list[tuple[str, int]] = []
    go = anyio.Event()
    with anyio.fail_after(TIMEOUT):
        async with clients(layout) as buses:

            async def contender(i: int, bus: Bus) -> None:
                nonlocal holding, most_at_once
                me = fresh(f"agent{i}")
                await go.wait()
                while True:
                    got = await bus.ok(
                        "acquire_lock", {"agent": me, "resource": resource, "wait_seconds": 0.5}
                    )
                    if got["acquired"]:
                        break
                    assert got["holder"] is not None
                holding += 1
                most_at_once = max(most_at_once, holding)
                grants.append((me, got["fencing_token"]))
                await anyio.sleep(0.05)  # the critical section
                holding -= 1
                released = await bus.ok(
                    "release_lock", {"agent": me, "resource": resource, "lock_token": got["lock_token"]}
                )
                assert released["released"] is True

            async with anyio.create_task_group() as tg:
                for i, bus in enumerate(buses):
                    tg.start_soon(contender, i, bus)
                go.set()

    assert most_at_once == 1
    assert len(grants) == 10 and len({agent for agent, _ in grants}) == 10
    tokens = [token for _, token in grants]
    assert all(x < y for x, y in itertools.pairwise(tokens)), tokens


async def test_inbox_subscribers_on_one_process_hear_a_send_through_the_other(a: Server, b: Server) -> None:
    alice = fresh("alice")
    inbox = f"agentbus://inbox/{alice}"
    legacy_watch, auto_watch = Watcher(), Watcher()
    with anyio.fail_after(TIMEOUT):
        async with (
            connect(a, "legacy", message_handler=on_updates(legacy_watch)) as legacy_a,
            connect(a, "auto") as auto_a,
            connect(b, "legacy") as sender_b,
            subscribed(legacy_a.client, "legacy", [inbox], legacy_watch),
            subscribed(auto_a.client, "auto", [inbox], auto_watch),
        ):
            # a message to someone else: neither hears anything
            await sender_b.ok("send_message", {"agent": "bob", "to": fresh("carol"), "body": "not for alice"})
            await legacy_watch.exactly()
            await auto_watch.exactly()

            sent = await sender_b.ok("send_message", {"agent": "bob", "to": alice, "body": "from B"})
            await legacy_watch.expect(inbox)
            await auto_watch.expect(inbox)
            await legacy_watch.exactly()
            await auto_watch.exactly()
            read = await auto_a.ok("read_inbox", {"agent": alice, "peek": True})

    assert [m["id"] for m in read["messages"]] == [sent["message_id"]]
    assert legacy_watch.seen == Counter({inbox: 1}) and auto_watch.seen == Counter({inbox: 1})


# --- --stateless -----------------------------------------------------------------------------------


async def test_a_stateless_server_serves_legacy_tool_calls(redis_url_real: str, tmp_path: Path) -> None:
    cap = fresh("cap")
    with http_server(
        bus_env(redis_url_real, fresh("stateless")), tmp_path / "server.log", "--stateless"
    ) as server:
        with anyio.fail_after(TIMEOUT):
            async with connect(server, "legacy") as legacy, connect(server, "auto") as modern:
                # No session to push updates on: subscriptions are not offered rather than never kept.
                resources = legacy.client.server_capabilities.resources
                assert resources is not None and not resources.subscribe
                beat = await legacy.ok("heartbeat", {"agent": "old", "capabilities": [cap]})
                assert beat["agent"]["agent"] == "old"
                created = await modern.ok("create_task", {"title": "stateless", "capability": cap})
                claim = await legacy.ok("claim_task", {"agent": "old"})
                assert claim["task"]["id"] == created["task_id"]
                await legacy.ok(
                    "complete_task",
                    {
                        "agent": "old",
                        "task_id": created["task_id"],
                        "lease_token": claim["lease"]["lease_token"],
                    },
                )
                agents = await modern.ok("list_agents")
                assert "old" in {x["agent"] for x in agents["agents"]}
                assert_tool_error(
                    await legacy.call("claim_task", {"lease_seconds": 0}), "invalid_argument", "lease_seconds"
                )
        server.assert_clean_log()
