"""A call that waits ends when its client hangs up or gives up on it, and takes nothing: over HTTP
(`hang_ups.py`), a client process killed while its claim or lock waits, in both protocol eras and every
way of answering, and a client that gives up on a call as the SDK's does; over stdio, the latter. Against
real server processes on a real Redis."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from helpers import SETTLE_BOUND, fresh_settings, until_listening
from helpers.http_servers import (
    INIT,
    POST_HEADERS,
    Server,
    bus_env,
    connect,
    fresh,
    hold_call,
    http_server,
    legacy_session,
    on_worker_async,
    session_headers,
)
from helpers.stdio import assert_clean_log
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.server.hang_ups import CLIENT_GONE
from mcp_agentbus.server.tokens import TokensFile

pytestmark = pytest.mark.anyio

# Waits far longer than a test: one that ends within it was ended by its client's hang-up.
LONG_WAITS = {"AGENTBUS_MAX_WAIT_SECONDS": "600"}

# A client that makes one call that waits (under a token, if given one), and is killed while it does.
WAITING_CLIENT = textwrap.dedent(
    """
    import json, sys, anyio, httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def main(url, mode, tool, arguments, token=None):
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=None)) as http:
            async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
                await client.call_tool(tool, json.loads(arguments))

    anyio.run(main, *sys.argv[1:])
    """
)


SERVES = {
    "event streams": (),
    "--json-responses": ("--json-responses",),
    "--stateless": ("--stateless",),
    "--workers 2": ("--workers", "2"),
    "--workers 2 --json-responses": ("--workers", "2", "--json-responses"),
}


@pytest.fixture(scope="module", params=list(SERVES))
def served(
    request: pytest.FixtureRequest, redis_url_real: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, str]]:
    namespace = fresh("hangups")
    env = {**bus_env(redis_url_real, namespace), **LONG_WAITS, "AGENTBUS_LOG_LEVEL": "INFO"}
    with http_server(env, tmp_path_factory.mktemp("hangups") / "serve.log", *SERVES[request.param]) as server:
        yield server, namespace
        server.assert_clean_log()


async def killed_while_waiting(
    server: Server,
    redis_url: str,
    namespace: str,
    mode: str,
    tool: str,
    arguments: dict[str, Any],
    token: str | None = None,
) -> None:
    """Start a client process whose call of `tool` waits; once the server waits for it, kill the process,
    and return once the server stopped waiting."""
    command = [sys.executable, "-c", WAITING_CLIENT, server.mcp, mode, tool, json.dumps(arguments)]
    command += [] if token is None else [token]
    async with await anyio.open_process(command, stdout=None, stderr=subprocess.DEVNULL) as proc:
        await until_listening(redis_url, namespace, arguments["agent"], listening=True)
        assert proc.returncode is None, "the client ended before it was killed"
        proc.kill()
        assert await proc.wait() == -signal.SIGKILL
    await until_listening(redis_url, namespace, arguments["agent"], listening=False)


async def assert_the_next_claimer_gets_a_new_task(server: Server, mode: str, capability: str) -> None:
    """A task of `capability` created now goes to the next agent that claims one, at its first attempt:
    no wait of a client gone took it."""
    async with connect(server, mode) as bus:
        created = await bus.ok("create_task", {"title": "after", "capability": capability})
        claim = await bus.ok("claim_task", {"agent": fresh("next"), "capabilities": [capability]})
    assert claim["task"] is not None, "a wait of a client gone took the task"
    assert claim["task"]["id"] == created["task_id"]
    assert claim["task"]["attempt"] == 1


@pytest.mark.parametrize("era", ["2025-11-25", "2026-07-28"])
def test_a_client_that_hangs_up_before_its_request_is_whole_gets_one_line_in_the_log(
    served: tuple[Server, str], era: str
) -> None:
    server, _ = served
    body = b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"heartbeat","arguments":{}}}'
    head = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n" % server.port
    head += b"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: %s\r\n" % era.encode()
    said = server.log.read_text().count(CLIENT_GONE)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + b"Content-Length: %d\r\n\r\n%s" % (len(body) + 50, body))  # 50 bytes short
    deadline = time.monotonic() + SETTLE_BOUND
    while server.log.read_text().count(CLIENT_GONE) == said:
        assert time.monotonic() < deadline, "the hang-up was not logged"
        time.sleep(0.05)
    server.assert_clean_log()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_claim_whose_client_is_killed_takes_no_task(
    served: tuple[Server, str], redis_url_real: str, mode: str
) -> None:
    server, namespace = served
    capability = fresh("cap")
    waits = {"agent": fresh("gone"), "capabilities": [capability], "wait_seconds": 600}
    await killed_while_waiting(server, redis_url_real, namespace, mode, "claim_task", waits)
    await assert_the_next_claimer_gets_a_new_task(server, mode, capability)


async def test_a_lock_whose_waiter_is_killed_goes_to_the_next(
    served: tuple[Server, str], redis_url_real: str
) -> None:
    server, namespace = served
    resource = f"src/{fresh('file')}.py"
    async with connect(server, "legacy") as bus:
        holder = fresh("holder")
        held = await bus.ok("acquire_lock", {"agent": holder, "resource": resource})
        await killed_while_waiting(
            server,
            redis_url_real,
            namespace,
            "legacy",
            "acquire_lock",
            {"agent": fresh("gone"), "resource": resource, "wait_seconds": 600},
        )
        await bus.ok(
            "release_lock", {"agent": holder, "resource": resource, "lock_token": held["lock_token"]}
        )
        taken = await bus.ok("acquire_lock", {"agent": fresh("next"), "resource": resource})
        assert taken["acquired"] is True, taken


# Not --stateless: there a legacy client's notifications/cancelled reaches no session (each request is
# its own), so the call waits on until its client closes the request (as a killed one does) or it ends.
@pytest.mark.parametrize(
    "served",
    ["event streams", "--json-responses", "--workers 2", "--workers 2 --json-responses"],
    indirect=True,
)
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_call_the_client_gives_up_on_takes_nothing(
    served: tuple[Server, str], redis_url_real: str, mode: str
) -> None:
    """The SDK's client, abandoning a call, tells a legacy session (notifications/cancelled) and closes
    a 2026-07-28 call's request."""
    server, namespace = served
    gone, capability = fresh("gone"), fresh("cap")
    # The waiter's session stays open throughout: the SDK's client fails as it closes if the answer to
    # the call it gave up on (legacy: "Request cancelled") arrives just then.
    async with connect(server, mode) as waiter:
        async with anyio.create_task_group() as tg:
            waits = {"agent": gone, "capabilities": [capability], "wait_seconds": 600}
            tg.start_soon(waiter.client.call_tool, "claim_task", waits)
            await until_listening(redis_url_real, namespace, gone, listening=True)
            tg.cancel_scope.cancel()
        await until_listening(redis_url_real, namespace, gone, listening=False)
        await assert_the_next_claimer_gets_a_new_task(server, mode, capability)
        await waiter.ok("heartbeat", {"agent": gone})  # the session serves on


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_claim_made_under_a_token_whose_client_is_killed_takes_no_task(
    redis_url_real: str, tmp_path: Path, mode: str
) -> None:
    """The session is told on the client's behalf: under its token, as the session's owner."""
    namespace, capability = fresh("tokened"), fresh("cap")
    tokens = TokensFile(tmp_path / "tokens.json")
    token, _ = tokens.create(namespace=namespace, agent="w-*", role="worker")
    waits = {"agent": "w-gone", "capabilities": [capability], "wait_seconds": 600}
    env = {**bus_env(redis_url_real, namespace), **LONG_WAITS, "AGENTBUS_TOKENS_FILE": str(tokens.path)}
    with http_server(env, tmp_path / "serve.log") as server:
        await killed_while_waiting(server, redis_url_real, namespace, mode, "claim_task", waits, token)
        async with AgentBus.open(fresh_settings(redis_url_real, namespace=namespace)) as bus:
            created = await bus.tasks.create("planner", title="after", capability=capability)
            claim = await bus.tasks.claim("w-next", capabilities=[capability])
        server.assert_clean_log()
    assert claim.task is not None, "the killed client's wait took the task"
    assert claim.task.id == created.task_id
    assert claim.task.attempt == 1


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_call_given_up_on_over_stdio_takes_nothing(
    redis_url_real: str, tmp_path: Path, mode: str
) -> None:
    """Over stdio the SDK's client sends notifications/cancelled in both eras (a client that dies ends
    the server: test_stdio_pipes.py)."""
    namespace, gone, capability = fresh("stdio"), fresh("gone"), fresh("cap")
    env = {**bus_env(redis_url_real, namespace), **LONG_WAITS}
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_agentbus", "serve"], env=env)
    with (tmp_path / "serve.log").open("w") as log:
        async with Client(stdio_client(params, errlog=log), mode=mode) as waiter:
            async with anyio.create_task_group() as tg:
                waits = {"agent": gone, "capabilities": [capability], "wait_seconds": 600}
                tg.start_soon(waiter.call_tool, "claim_task", waits)
                await until_listening(redis_url_real, namespace, gone, listening=True)
                tg.cancel_scope.cancel()
            await until_listening(redis_url_real, namespace, gone, listening=False)
            async with AgentBus.open(fresh_settings(redis_url_real, namespace=namespace)) as bus:
                created = await bus.tasks.create("planner", title="after", capability=capability)
                claim = await bus.tasks.claim(fresh("next"), capabilities=[capability])
            assert claim.task is not None, "the abandoned wait took the task"
            assert claim.task.id == created.task_id
            assert claim.task.attempt == 1
            assert (await waiter.call_tool("heartbeat", {"agent": gone})).is_error is not True
    assert_clean_log(tmp_path / "serve.log")


@pytest.mark.parametrize("served", ["--workers 2", "--workers 2 --json-responses"], indirect=True)
async def test_a_call_passed_on_to_the_worker_of_its_session_ends_with_its_client(
    served: tuple[Server, str], redis_url_real: str
) -> None:
    """The call reaches the worker that does not hold its session, which passes it on (session_routes.py);
    its client hangs up before any answer (with one JSON body, none comes until the wait ends)."""
    server, namespace = served
    session, owner = legacy_session(server)
    gone = fresh("gone")
    waits = {"agent": gone, "capabilities": [fresh("cap")], "wait_seconds": 600}
    params = {"name": "claim_task", "arguments": waits}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params}
    async with on_worker_async(server, 1 - owner) as client, anyio.create_task_group() as tg:
        tg.start_soon(partial(client.post, server.mcp, json=call, headers=session_headers(session)))
        await until_listening(redis_url_real, namespace, gone, listening=True)
        tg.cancel_scope.cancel()  # the POST's connection closes: its client hung up
    await until_listening(redis_url_real, namespace, gone, listening=False)


@pytest.mark.parametrize("flags", [(), ("--workers", "2")], ids=["one process", "--workers 2"])
async def test_a_legacy_call_whose_stream_ends_as_the_server_stops_takes_nothing(
    redis_url_real: str, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    """On SIGTERM the SDK closes every event stream at once, while the server waits for the calls still
    running (here a 2026-07-28 one, answered with one JSON body when its wait ends); a legacy session's
    call whose stream was closed is cancelled with it, rather than waiting on to take a task created
    meanwhile for a client that got no answer."""
    namespace, gone, holder, capability = fresh("stopping"), fresh("gone"), fresh("holder"), fresh("cap")
    env = {**bus_env(redis_url_real, namespace), **LONG_WAITS}
    with http_server(env, tmp_path / "serve.log", *flags) as server:
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold_call, server, {"agent": holder, "capabilities": ["other"], "wait_seconds": 60})
            await until_listening(redis_url_real, namespace, holder, listening=True)
            waits = {"agent": gone, "capabilities": [capability], "wait_seconds": 600}
            answer = await stopped_while_waiting(server, redis_url_real, namespace, waits)
            assert answer.status_code == 200 and '"result"' not in answer.text, "its stream was closed"
            async with AgentBus.open(fresh_settings(redis_url_real, namespace=namespace)) as bus:
                created = await bus.tasks.create("planner", title="meanwhile", capability=capability)
                await until_listening(redis_url_real, namespace, gone, listening=False)
                assert server.proc.poll() is None, "the server still waits for the 2026-07-28 call"
                claim = await bus.tasks.claim(fresh("next"), capabilities=[capability])
            tg.cancel_scope.cancel()  # the 2026-07-28 call is given up: its server ends
        server.assert_clean_log()
    assert claim.task is not None, "the cut-off call took the task"
    assert claim.task.id == created.task_id
    assert claim.task.attempt == 1


async def stopped_while_waiting(
    server: Server, redis_url: str, namespace: str, arguments: dict[str, Any]
) -> httpx2.Response:
    """A legacy session's claim_task with `arguments`, raw; once it waits, the server is sent SIGTERM.
    Its answer."""
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "claim_task", "arguments": arguments},
    }
    answers: list[httpx2.Response] = []
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(10, read=None)) as http:
        opened = await http.post(server.mcp, json=INIT, headers=POST_HEADERS)
        headers = session_headers(opened.headers["mcp-session-id"])
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(server.mcp, json=initialized, headers=headers)).status_code == 202

        async def call_it() -> None:
            answers.append(await http.post(server.mcp, json=call, headers=headers))

        with anyio.fail_after(SETTLE_BOUND):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call_it)
                await until_listening(redis_url, namespace, arguments["agent"], listening=True)
                server.proc.send_signal(signal.SIGTERM)
    return answers[0]
