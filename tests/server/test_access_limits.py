"""What one token may hold and for how long, against real HTTP server processes on a real Redis: caps
on sessions, listen streams and subscriptions per token (others keep working past one token's cap),
revocation ending streams, sessions and waits, the tokens file's own safety, roles over resources,
and requests sent by halves. The caps are tiny here (see `LIMITS`), so every flood stays small.

Where the point is the server's own bookkeeping (subscriptions freed when a session closes, expires
or loses its token), the server runs in this process under uvicorn and is counted directly.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from helpers import free_port, fresh_settings, until_listening
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
from helpers.subscriptions import ROOT, follow, read_json, subscribe, unsubscribe
from helpers.tokens import assert_resource_refused, connect_as
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ResourceUpdated, Subscription, SubscriptionLost
from mcp.shared.exceptions import MCPError

from mcp_agentbus.server.app import AgentBusServer
from mcp_agentbus.server.http import build_app, uvicorn_config
from mcp_agentbus.server.tokens import TokensFile
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio

TIMEOUT = 30  # bound on one test's traffic; every test finishes far sooner
LIMITS = {
    "AGENTBUS_MAX_SESSIONS_PER_TOKEN": "3",
    "AGENTBUS_MAX_LISTEN_STREAMS_PER_TOKEN": "2",
    "AGENTBUS_MAX_SUBSCRIPTIONS_PER_TOKEN": "3",
    "AGENTBUS_HTTP_REQUEST_TIMEOUT_SECONDS": "1",
}
WORKFLOWS, LOCKS, AGENTS = f"{ROOT}workflows", f"{ROOT}locks", f"{ROOT}agents"


class Deployment:
    def __init__(self, server: Server, tokens: TokensFile) -> None:
        self.server = server
        self.tokens = tokens

    def grant(self, agent: str = "w-*", *, namespace: str | None = None, role: str = "all") -> str:
        token, _ = self.tokens.create(namespace=namespace or fresh("ns"), agent=agent, role=role)
        return token


@pytest.fixture(scope="module")
def deployment(redis_url_real: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("limits")
    tokens = TokensFile(workdir / "tokens.json")
    tokens.create(namespace=fresh("first"), agent="first", role="worker")
    env = {**bus_env(redis_url_real, fresh("own")), **LIMITS, "AGENTBUS_TOKENS_FILE": str(tokens.path)}
    with http_server(env, workdir / "server.log") as server:
        yield Deployment(server, tokens)


@pytest.fixture
def dep(deployment: Deployment) -> Iterator[Deployment]:
    yield deployment
    deployment.server.assert_clean_log()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def open_session(http: httpx2.AsyncClient, url: str, token: str) -> httpx2.Response:
    """A legacy initialize, by hand: the session it opens stays until deleted or idle."""
    return await http.post(url, json=INIT, headers={**POST_HEADERS, **bearer(token)})


def session_headers(opened: httpx2.Response, token: str) -> dict[str, str]:
    return {
        **POST_HEADERS,
        **bearer(token),
        "mcp-session-id": opened.headers["mcp-session-id"],
        "mcp-protocol-version": ERA["legacy"],
    }


def assert_limit_refused(response: httpx2.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert "mcp-session-id" not in response.headers
    error = response.json()["error"]["data"]["error"]
    assert error["code"] == "too_many_sessions", error
    for fragment in fragments:
        assert fragment in error["message"] + error["hint"], (fragment, error)


def assert_mcp_refused(exc: BaseException, code: str, *fragments: str) -> None:
    assert isinstance(exc, MCPError), exc
    assert isinstance(exc.data, dict), exc
    error = exc.data["error"]
    assert error["code"] == code, error
    for fragment in fragments:
        assert fragment in error["message"] + error["hint"], (fragment, error)


# --- sessions ----------------------------------------------------------------------------------------


async def test_a_token_past_its_session_cap_is_refused_while_other_tokens_still_initialize(
    redis_url_real: str,
    tmp_path: Path,
) -> None:
    """Per token 3, in all 5: one token gets 429 at its fourth; another still gets in, up to the
    server-wide cap (503 for everyone); a session ended makes room again."""
    tokens = TokensFile(tmp_path / "tokens.json")
    greedy, _ = tokens.create(namespace=fresh("s"), agent="w-*", role="worker")
    other, _ = tokens.create(namespace=fresh("s"), agent="w-*", role="worker")
    late, _ = tokens.create(namespace=fresh("s"), agent="w-*", role="worker")
    env = {
        **bus_env(redis_url_real, fresh("own")),
        **LIMITS,
        "AGENTBUS_MAX_SESSIONS": "5",
        "AGENTBUS_TOKENS_FILE": str(tokens.path),
    }
    with http_server(env, tmp_path / "server.log") as server, anyio.fail_after(TIMEOUT):
        async with httpx2.AsyncClient(timeout=10) as http:
            opened = [await open_session(http, server.mcp, greedy) for _ in range(3)]
            assert [r.status_code for r in opened] == [200] * 3
            for _ in range(5):  # a flood past the cap changes nothing
                assert_limit_refused(await open_session(http, server.mcp, greedy), 429, "3", "DELETE")

            others = [await open_session(http, server.mcp, other) for _ in range(2)]
            assert [r.status_code for r in others] == [200] * 2
            # five sessions are open: the server-wide cap now refuses every token
            assert_limit_refused(await open_session(http, server.mcp, late), 503, "5", "Retry")
            assert_limit_refused(await open_session(http, server.mcp, other), 503)

            ended = await http.delete(server.mcp, headers=session_headers(opened[0], greedy))
            assert ended.status_code == 200, ended.text
            # the server forgets the session a moment after answering the DELETE
            while (admitted := await open_session(http, server.mcp, late)).status_code == 503:  # noqa: ASYNC110
                await anyio.sleep(0.05)
            assert admitted.status_code == 200, admitted.text

            # the open sessions still work
            call = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
            for response, token in [(opened[1], greedy), (others[0], other)]:
                answered = await http.post(server.mcp, json=call, headers=session_headers(response, token))
                assert answered.status_code == 200, answered.text
    assert "Traceback" not in (tmp_path / "server.log").read_text()


async def test_sessions_opened_all_at_once_are_admitted_up_to_each_cap_exactly(
    redis_url_real: str, tmp_path: Path
) -> None:
    """Per token 10, in all 30. Three tokens open 10, 10 and 12 sessions all at once: 30 are admitted,
    none refused while there was room (each token's 10), and the greedy token's 2 past its cap get
    429; then a fourth token's 5 get 503."""
    tokens = TokensFile(tmp_path / "tokens.json")
    first, second, greedy, late = (
        tokens.create(namespace=fresh("s"), agent="w-*", role="worker")[0] for _ in range(4)
    )
    env = {
        **bus_env(redis_url_real, fresh("own")),
        **LIMITS,
        "AGENTBUS_MAX_SESSIONS_PER_TOKEN": "50",
        "AGENTBUS_MAX_SESSIONS": "150",
        "AGENTBUS_TOKENS_FILE": str(tokens.path),
    }
    statuses: dict[str, list[int]] = {first: [], second: [], greedy: [], late: []}

    async def opens(http: httpx2.AsyncClient, server: Server, token: str) -> None:
        statuses[token].append((await open_session(http, server.mcp, token)).status_code)

    with http_server(env, tmp_path / "server.log") as server, anyio.fail_after(TIMEOUT):
        limits = httpx2.Limits(max_connections=None)
        async with httpx2.AsyncClient(timeout=TIMEOUT, limits=limits) as http:
            async with anyio.create_task_group() as tg:
                for token, count in [(first, 50), (second, 50), (greedy, 52)]:
                    for _ in range(count):  # staggered: each comes while earlier ones are being opened
                        tg.start_soon(opens, http, server, token)
                        await anyio.sleep(0.001)
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(opens, http, server, late)
    assert sorted(statuses[first]) == sorted(statuses[second]) == [200] * 50, statuses
    assert sorted(statuses[greedy]) == [200] * 50 + [429] * 2, statuses
    assert statuses[late] == [503] * 5, statuses
    assert "Traceback" not in (tmp_path / "server.log").read_text()


async def test_a_token_past_its_waiting_calls_is_refused_while_others_still_wait(
    redis_url_real: str, tmp_path: Path
) -> None:
    """Per token 2 calls that wait: a third waiting call of the token is refused at once, without being
    run; its calls that do not wait, and another token's waits, go on; a wait that ended gives room."""
    tokens = TokensFile(tmp_path / "tokens.json")
    namespace = fresh("waits")
    greedy, _ = tokens.create(namespace=namespace, agent="g-*", role="worker")
    other, _ = tokens.create(namespace=namespace, agent="o-*", role="worker")
    env = {
        **bus_env(redis_url_real, fresh("own")),
        "AGENTBUS_MAX_WAITS_PER_TOKEN": "2",
        "AGENTBUS_MAX_WAIT_SECONDS": "30",
        "AGENTBUS_TOKENS_FILE": str(tokens.path),
    }

    async def call(http: httpx2.AsyncClient, token: str, tool: str, arguments: dict[str, Any]) -> Any:
        body, headers = modern_call(tool, arguments)
        answer = await http.post(server.mcp, json=body, headers={**headers, **bearer(token)})
        assert answer.status_code == 200, answer.text
        return answer.json()["result"]

    with http_server(env, tmp_path / "server.log") as server, anyio.fail_after(TIMEOUT):
        limits = httpx2.Limits(max_connections=None)
        async with httpx2.AsyncClient(timeout=TIMEOUT, limits=limits) as http:
            async with anyio.create_task_group() as holders:
                for n in (1, 2):
                    waits = {"agent": f"g-{n}", "capabilities": ["nothing-comes"], "wait_seconds": 25}
                    holders.start_soon(call, http, greedy, "claim_task", waits)
                    await until_listening(redis_url_real, namespace, f"g-{n}", listening=True)
                third = {"agent": "g-3", "capabilities": ["nothing-comes"], "wait_seconds": 25}
                refused = await call(http, greedy, "claim_task", third)
                assert refused["isError"] is True, refused
                error = refused["structuredContent"]["error"]
                assert error["code"] == "invalid_argument" and "2 calls waiting" in error["message"], error
                beat = await call(http, greedy, "heartbeat", {"agent": "g-3"})  # no wait: no limit
                assert beat["isError"] is False, beat
                short = {"agent": "o-1", "capabilities": ["nothing-comes"], "wait_seconds": 0.2}
                assert (await call(http, other, "claim_task", short))["isError"] is False
                holders.cancel_scope.cancel()  # the clients hang up: their waits end, and free their room
            for n in (1, 2):
                await until_listening(redis_url_real, namespace, f"g-{n}", listening=False)
            again = {**third, "wait_seconds": 0.2}
            assert (await call(http, greedy, "claim_task", again))["isError"] is False
    assert "Traceback" not in (tmp_path / "server.log").read_text()


# --- listen streams and legacy subscriptions -----------------------------------------------------------


async def test_listen_streams_past_the_token_cap_are_refused_and_other_tokens_still_listen(
    dep: Deployment,
) -> None:
    greedy, other = dep.grant(), dep.grant()
    inbox = f"{ROOT}inbox/w-1"
    with anyio.fail_after(TIMEOUT):
        async with connect_as(dep.server, "auto", greedy) as g, connect_as(dep.server, "auto", other) as o:
            async with AsyncExitStack() as streams:
                for _ in range(2):
                    await streams.enter_async_context(g.client.listen(resource_subscriptions=[inbox]))
                for _ in range(3):
                    with pytest.raises(MCPError) as caught:
                        async with g.client.listen(resource_subscriptions=[inbox]):
                            pytest.fail("a third stream was opened")
                    assert_mcp_refused(caught.value, "too_many_streams", "2", "Close a stream")
                async with o.client.listen(resource_subscriptions=[inbox]) as stream:
                    assert stream.honored.resource_subscriptions == [inbox]
            # the streams closed: the token may listen again
            await retried(lambda: follow(g.client, "auto", inbox), "too_many_streams")


async def test_legacy_subscriptions_past_the_token_cap_are_refused_and_a_uri_counts_once(
    dep: Deployment,
) -> None:
    greedy, other = dep.grant(), dep.grant()
    uris = [f"{ROOT}inbox/w-1", LOCKS, WORKFLOWS]
    with anyio.fail_after(TIMEOUT):
        async with (
            connect_as(dep.server, "legacy", greedy) as first,
            connect_as(dep.server, "legacy", greedy) as second,
            connect_as(dep.server, "legacy", other) as third,
        ):
            for uri in [*uris, uris[0], uris[0]]:  # the same URI again counts once
                await subscribe(first.client, uri)
            for client, uri in [(first.client, AGENTS), (second.client, AGENTS), (second.client, LOCKS)]:
                with pytest.raises(MCPError) as caught:  # the cap is the token's, over its sessions
                    await subscribe(client, uri)
                assert_mcp_refused(caught.value, "too_many_subscriptions", "3", "resources/unsubscribe")
            await subscribe(third.client, AGENTS)  # another token is not affected

            await unsubscribe(first.client, LOCKS)
            await subscribe(second.client, AGENTS)  # room again
        # the sessions ended: their subscriptions went with them
        async with connect_as(dep.server, "legacy", greedy) as again:
            for uri in uris:
                await retried(partial(subscribe, again.client, uri), "too_many_subscriptions")


# --- roles over resources ----------------------------------------------------------------------------


async def test_a_heartbeat_only_token_can_neither_read_nor_follow_workflows(
    dep: Deployment, mode: str
) -> None:
    namespace = fresh("roles")
    narrow = dep.grant(namespace=namespace, role="heartbeat")
    worker = dep.grant(namespace=namespace, role="worker")
    coordinator = dep.grant(namespace=namespace, role="coordinator")
    with anyio.fail_after(TIMEOUT):
        async with (
            connect_as(dep.server, mode, narrow) as n,
            connect_as(dep.server, mode, worker) as w,
            connect_as(dep.server, mode, coordinator) as c,
        ):
            await c.ok(
                "create_workflow", {"agent": "w-0", "title": "secret", "tasks": [{"key": "a", "title": "A"}]}
            )
            for uri in (WORKFLOWS, f"{WORKFLOWS}/wf-1", f"{ROOT}inbox/w-1", LOCKS, AGENTS, f"{ROOT}events/*"):
                with pytest.raises(MCPError) as caught:
                    await read_json(n.client, uri)
                assert_resource_refused(caught.value, uri, "forbidden", "heartbeat")
                assert "secret" not in caught.value.message
            assert (await n.client.list_resources()).resources == []
            assert (await n.client.list_resource_templates()).resource_templates == []
            with pytest.raises(MCPError) as caught:
                await follow(n.client, mode, WORKFLOWS)
            assert_resource_refused(caught.value, WORKFLOWS, "forbidden", "get_workflow")

            # each resource follows the tool it mirrors
            assert {str(r.uri) for r in (await w.client.list_resources()).resources} == {WORKFLOWS, LOCKS}
            assert (await read_json(w.client, WORKFLOWS))["workflows"][0]["title"] == "secret"
            with pytest.raises(MCPError) as caught:
                await read_json(w.client, AGENTS)  # a worker may not call list_agents
            assert_resource_refused(caught.value, AGENTS, "forbidden", "list_agents")
            assert {str(r.uri) for r in (await c.client.list_resources()).resources} == {
                AGENTS,
                WORKFLOWS,
                LOCKS,
            }
            assert (await read_json(c.client, LOCKS)) == {"locks": []}  # through list_agents


async def test_listen_streams_count_their_uris_against_the_tokens_subscriptions(dep: Deployment) -> None:
    """3 per token, over listen streams and legacy subscriptions together: one stream asking for 4 URIs
    is refused, as is a second stream of 2 beside an open one of 2, or beside a legacy subscription and
    an open stream of 2; another token is not affected; a closed stream gives its room back."""
    greedy, other = dep.grant(), dep.grant()
    two, four = [WORKFLOWS, LOCKS], [WORKFLOWS, LOCKS, AGENTS, f"{ROOT}inbox/w-1"]
    with anyio.fail_after(TIMEOUT):
        async with (
            connect_as(dep.server, "auto", greedy) as g,
            connect_as(dep.server, "legacy", greedy) as legacy,
            connect_as(dep.server, "auto", other) as o,
        ):
            with pytest.raises(MCPError) as caught:
                async with g.client.listen(resource_subscriptions=four):
                    pytest.fail("a stream of 4 URIs was opened")
            assert_mcp_refused(caught.value, "too_many_subscriptions", "asks for 4", "may hold 3")
            async with g.client.listen(resource_subscriptions=two):
                with pytest.raises(MCPError) as caught:
                    async with g.client.listen(resource_subscriptions=two):
                        pytest.fail("a second stream of 2 was opened beside one of 2")
                assert_mcp_refused(caught.value, "too_many_subscriptions", "2 held now")
                async with o.client.listen(resource_subscriptions=four[:3]) as stream:
                    assert stream.honored.resource_subscriptions == four[:3]
            await subscribe(legacy.client, AGENTS)  # one legacy subscription, and room for 2 again
            stream = await retried(lambda: open_and_close(g.client, two), "too_many_subscriptions")
            assert stream == two
            with pytest.raises(MCPError) as caught:
                async with g.client.listen(resource_subscriptions=four[:3]):
                    pytest.fail("3 URIs were followed beside a legacy subscription")
            assert_mcp_refused(caught.value, "too_many_subscriptions", "1 held now")


async def open_and_close(client: Client, uris: list[str]) -> list[str] | None:
    """A listen stream of `uris`, opened and closed again; the URIs it was granted."""
    async with client.listen(resource_subscriptions=uris) as stream:
        return stream.honored.resource_subscriptions


# --- revocation --------------------------------------------------------------------------------------


async def test_a_revoked_tokens_listen_stream_ends_forbidden_and_hears_nothing_after(dep: Deployment) -> None:
    namespace = fresh("revoke-listen")
    doomed, grant = dep.tokens.create(namespace=namespace, agent="w-1", role="worker")
    sender = dep.grant("boss", namespace=namespace)
    inbox = f"{ROOT}inbox/w-1"
    heard: list[str] = []

    async def hear(stream: Subscription) -> None:
        async for event in stream:
            heard.append(str(event))

    with anyio.fail_after(TIMEOUT):
        async with (
            connect_as(dep.server, "auto", doomed) as d,
            connect_as(dep.server, "auto", sender) as s,
            d.client.listen(resource_subscriptions=[inbox]) as stream,
        ):
            await s.ok("send_message", {"to": "w-1", "body": "before"})
            assert isinstance(first := await stream.__anext__(), ResourceUpdated) and first.uri == inbox

            assert dep.tokens.revoke(grant.id) is not None
            await s.ok("send_message", {"to": "w-1", "body": "after"})
            with pytest.raises(SubscriptionLost) as caught:
                await hear(stream)
    assert heard == [], "a revoked token's stream was told of a change made after the revocation"
    assert_mcp_refused(caught.value.__cause__ or caught.value, "forbidden", "revoked")


async def test_a_revoked_tokens_waiting_read_ends_forbidden_and_leaves_later_mail_unread(
    dep: Deployment, mode: str
) -> None:
    namespace = fresh("revoke-wait")
    doomed, grant = dep.tokens.create(namespace=namespace, agent="w-1", role="worker")
    boss = dep.grant("*", namespace=namespace)
    waiting = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        waiting.set()

    with anyio.fail_after(TIMEOUT):
        async with connect_as(dep.server, mode, doomed) as d, connect_as(dep.server, mode, boss) as b:
            async with anyio.create_task_group() as tg:
                results: list[Any] = []

                async def wait_for_mail() -> None:
                    results.append(
                        await d.call("read_inbox", {"wait_seconds": 5}, progress_callback=on_progress)
                    )

                tg.start_soon(wait_for_mail)
                await waiting.wait()  # it is waiting on the server
                assert dep.tokens.revoke(grant.id) is not None
                sent = await b.ok("send_message", {"to": "w-1", "body": "sent after the revocation"})
            [result] = results
            assert result.is_error and result.structured_content["error"]["code"] == "forbidden", result
            unread = await b.ok("read_inbox", {"agent": "w-1", "peek": True})
    assert [m["id"] for m in unread["messages"]] == [sent["message_id"]]


@asynccontextmanager
async def in_process(settings: Settings, tokens: TokensFile) -> AsyncIterator[tuple[str, AgentBusServer]]:
    """The HTTP app of `agentbus serve`, under uvicorn in this process: its URL and its server."""
    app = build_app(settings, tokens=tokens)
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", free_port(), settings))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        await until(lambda: server.started)
        yield f"http://127.0.0.1:{server.config.port}/mcp", app.state.agentbus
        server.should_exit = True


async def until(condition: Callable[[], bool]) -> None:
    """Poll (the caller bounds it) for state the server changes in its own time, with no event to await."""
    while not condition():  # noqa: ASYNC110
        await anyio.sleep(0.02)


async def retried(attempt: Callable[[], Awaitable[Any]], code: str) -> Any:
    """`attempt`, again while it is refused with `code`: room a closed session or stream makes is
    freed when the server has seen it close, a moment after the client did."""
    while True:
        try:
            return await attempt()
        except MCPError as exc:
            if not (isinstance(exc.data, dict) and exc.data.get("error", {}).get("code") == code):
                raise
        await anyio.sleep(0.05)


async def test_subscriptions_of_closed_expired_and_revoked_sessions_are_freed(
    redis_url_real: str,
    tmp_path: Path,
) -> None:
    settings = fresh_settings(redis_url_real, tokens_file=tmp_path / "tokens.json", session_idle_seconds=1)
    tokens = TokensFile(settings.tokens_file)
    token, _ = tokens.create(namespace=settings.namespace, agent="w-*", role="worker")
    doomed, grant = tokens.create(namespace=settings.namespace, agent="w-*", role="worker")
    uris = [f"{ROOT}inbox/w-1", LOCKS]
    with anyio.fail_after(TIMEOUT):
        async with in_process(settings, TokensFile(settings.tokens_file)) as (url, server):
            assert server.running is not None
            push = server.running.namespaces.get(settings.namespace).push

            # closed: the client ends its session (DELETE)
            async with legacy_client(url, token) as client:
                for uri in [*uris, uris[0]]:
                    await subscribe(client, uri)
                assert push.subscriptions == 2
            await until(lambda: push.subscriptions == push.uris == 0)

            # expired: a session that goes quiet ends after session_idle_seconds
            async with httpx2.AsyncClient(timeout=10) as http:
                opened = await open_session(http, url, token)
                headers = session_headers(opened, token)
                request = {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "resources/subscribe",
                    "params": {"uri": uris[0]},
                }
                answered = await http.post(url, json=request, headers=headers)
                assert answered.status_code == 200 and '"result"' in answered.text, answered.text
                assert push.subscriptions == 1
                await until(lambda: push.subscriptions == push.uris == 0)
                gone = await http.post(
                    url, json={"jsonrpc": "2.0", "id": 3, "method": "ping"}, headers=headers
                )
                assert gone.status_code == 404, gone.text

            # revoked: the session ends at once (its GET stream too), and its subscriptions with it
            async with legacy_client(url, doomed) as client:
                for uri in uris:
                    await subscribe(client, uri)
                assert push.subscriptions == 2
                assert tokens.revoke(grant.id) is not None
                await until(lambda: push.subscriptions == push.uris == 0)
                with pytest.raises(MCPError):
                    await client.call_tool("heartbeat", {"agent": "w-1"})


@asynccontextmanager
async def legacy_client(url: str, token: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers=bearer(token)) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        yield client


# --- the tokens file ---------------------------------------------------------------------------------


def serve_with(tokens_path: Path, redis_url: str) -> Any:
    env = {**bus_env(redis_url, fresh("own")), "AGENTBUS_TOKENS_FILE": str(tokens_path)}
    return run([*SERVE, "--transport", "http", "--port", str(free_port())], **env)


def test_a_tokens_file_or_directory_others_could_change_is_refused_at_start(
    redis_url_real: str,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "conf"
    tokens = TokensFile(folder / "tokens.json")
    tokens.create(namespace="proj", agent="w-*", role="worker")
    path = tokens.path

    path.chmod(0o666)
    assert_refused(serve_with(path, redis_url_real), str(path), "writable by others", f"chmod go-w {path}")
    path.chmod(0o600)
    folder.chmod(0o777)
    assert_refused(
        serve_with(path, redis_url_real), str(folder), "writable by others", f"chmod go-w {folder}"
    )
    folder.chmod(0o700)
    if os.getuid() == 0:  # only root can give a file away
        os.chown(path, 65534, -1)
        assert_refused(serve_with(path, redis_url_real), str(path), "uid 65534", "chown")
        os.chown(path, 0, -1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_a_corrupt_tokens_file_while_serving_keeps_the_last_good_grants_and_warns_once(
    redis_url_real: str,
    tmp_path: Path,
) -> None:
    tokens = TokensFile(tmp_path / "tokens.json")
    good, _ = tokens.create(namespace=fresh("c"), agent="w-1", role="worker")
    env = {**bus_env(redis_url_real, fresh("own")), "AGENTBUS_TOKENS_FILE": str(tokens.path)}
    log = tmp_path / "server.log"
    with http_server(env, log) as server, anyio.fail_after(TIMEOUT):
        async with connect_as(server, "legacy", good) as bus:
            half = tokens.path.with_name("half.json")
            half.write_text('{"tokens": [{"id": "half-writ')  # what a reader sees of a file half written
            os.replace(half, tokens.path)  # in one step, so the server sees this one version only
            for _ in range(5):
                assert (await bus.ok("heartbeat"))["agent"]["agent"] == "w-1"
            async with httpx2.AsyncClient(timeout=10) as http:
                refused = await http.post(
                    server.mcp, json=INIT, headers={**POST_HEADERS, **bearer("abt_nope")}
                )
            assert refused.status_code == 401, refused.text

            tokens.path.unlink()
            fixed, _ = TokensFile(tokens.path).create(namespace=fresh("c"), agent="w-2", role="worker")
            async with connect_as(server, "auto", fixed) as again:
                assert (await again.ok("heartbeat"))["agent"]["agent"] == "w-2"
    text = log.read_text()
    assert "Traceback" not in text, text
    assert text.count("is damaged") == 1, text
    assert "Keeping the 1 token(s) read before" in text


def test_token_create_on_a_new_file_says_running_servers_need_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "new" / "tokens.json"
    args = [*MODULE, "token", "create", "--agent", "w-*", "--tokens-file", str(path)]
    first = run(args)
    assert first.returncode == 0, first.stderr
    assert "until restarted" in first.stderr and str(path) in first.stderr
    second = run(args)
    assert second.returncode == 0, second.stderr
    assert "restart" not in second.stderr  # the file existed: running servers already use it


# --- requests sent by halves ---------------------------------------------------------------------------


async def test_a_half_sent_request_is_closed_within_the_timeout_and_others_are_served(
    dep: Deployment,
) -> None:
    halves = [
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl",  # headers cut short
        b'POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{"jsonrpc"',  # body cut short
    ]
    with anyio.fail_after(TIMEOUT):
        streams = [await anyio.connect_tcp("127.0.0.1", dep.server.port) for _ in halves]
        for stream, half in zip(streams, halves, strict=True):
            await stream.send(half)
        async with httpx2.AsyncClient(timeout=5) as http:
            assert (await http.get(dep.server.healthz)).status_code == 200
        for stream in streams:
            with anyio.fail_after(10):  # the setting is 1 s
                received = b""
                try:
                    while chunk := await stream.receive():
                        received += chunk
                except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
                    pass
            assert b"200 OK" not in received
            await stream.aclose()


def test_the_connection_limit_and_request_timeout_reach_uvicorn() -> None:
    settings = Settings(redis_url="memory://", http_max_connections=7, http_request_timeout_seconds=2.5)
    config = uvicorn_config(build_app(settings), "127.0.0.1", 1, settings)
    assert config.limit_concurrency == 7
    assert isinstance(config.http, type) and config.http.timeout == 2.5  # type: ignore[attr-defined]


def test_what_a_grant_held_ends_when_its_namespace_agents_or_role_change_but_not_its_note(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens.json"
    token, grant = TokensFile(path).create(namespace="proj", agent="w-*", role="worker")
    serving = TokensFile(path)  # the server's view of the file
    assert serving.find(token) == grant

    def rewrite(**change: str) -> None:
        data = json.loads(path.read_text())
        data["tokens"][0].update(change)
        path.with_name("next.json").write_text(json.dumps(data))
        os.replace(path.with_name("next.json"), path)

    ended: list[dict[str, str]] = []
    # "porj": a file of the very same size, written at once, is noticed all the same
    for change in ({"namespace": "porj"}, {"agent": "w-1"}, {"role": "all"}):
        serving.watch(grant, partial(ended.append, change))
        rewrite(note="renamed")
        serving.refresh()
        assert ended == [] and serving.holds(grant)
        rewrite(**change)
        serving.refresh()
        assert ended == [change] and not serving.holds(grant), change
        ended.clear()
        rewrite(namespace="proj", agent="w-*", role="worker")  # as it was, for the next change
        assert serving.holds(grant)
