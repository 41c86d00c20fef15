"""The dashboard's event streams, on real processes: they follow the events stream (so a change made by
any process shows), live through a Redis restart, are shared fairly between tokens and end with their
token; and `agentbus dashboard --namespace a,b` serves each listed namespace and no other."""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import cast

import anyio
import httpx2
import pytest
from click.testing import CliRunner
from helpers import free_port, fresh_settings
from helpers.browser import agentbus_dashboard
from helpers.http_servers import (
    Server,
    bus_env,
    fresh,
    guarded_server,  # noqa: F401 (fixture)
    http_server,
)
from helpers.redis_servers import DATA_ARGS, redis_binary, start_redis, stop_redis
from starlette.responses import StreamingResponse

from mcp_agentbus.cli.dashboard import dashboard
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.redis.local import LocalBus
from mcp_agentbus.server.dashboard_stream import MAX_STREAMS_PER_TOKEN, Streams
from mcp_agentbus.server.tokens import TokensFile

pytestmark = pytest.mark.anyio

TIMEOUT = 60  # bound on one test, process starts included
ENDED_WITHIN = 5.0  # a revoked token's stream ends within this (it looks at the tokens file every second)
STOPPED_WITHIN = 30.0  # seconds a server takes to stop with a stream open (bus_env: its grace is 5 + 5 s)


async def change(url: str, namespace: str, topic: str = "note.changed") -> None:
    """A change of `namespace` made by this test's own process, through the core bus."""
    async with AgentBus.open(fresh_settings(url, namespace=namespace)) as bus:
        await bus.events.publish("tester", topic, {"by": "test"})


async def next_changed(lines: AsyncIterator[str]) -> None:
    async for line in lines:
        if line == "event: changed":
            return
    raise AssertionError("the stream ended before it said changed")


async def log_says(log: Path, text: str) -> None:
    while True:
        if text in await anyio.Path(log).read_text():
            return
        await anyio.sleep(0.05)


async def test_every_open_stream_of_a_namespace_hears_each_change_and_closed_ones_free_their_slots(
    bus: AgentBus,
) -> None:
    """In-process on both backends: the streams' body, as the HTTP response would send it."""
    streams = Streams(None)
    bodies = []
    for _ in range(2):
        response = streams.respond(bus, None)
        assert isinstance(response, StreamingResponse)
        bodies.append(cast(AsyncGenerator[str, None], response.body_iterator))
    with anyio.fail_after(TIMEOUT):
        assert [await anext(body) for body in bodies] == ["retry: 1000\n: connected\n\n"] * 2
        await bus.events.publish("tester", "note.one")
        assert [await anext(body) for body in bodies] == ["event: changed\ndata: {}\n\n"] * 2
        for body in bodies:
            await body.aclose()
    assert len(streams) == 0


async def test_a_stream_lives_through_a_redis_restart_and_says_changed_once_redis_is_back(
    tmp_path: Path,
) -> None:
    binary = redis_binary("redis-server") or pytest.skip("redis-server not installed")
    port = free_port()
    url, namespace, log = f"redis://127.0.0.1:{port}/0", fresh("restart"), tmp_path / "dashboard.log"
    for workdir in ("before", "after"):
        (tmp_path / workdir).mkdir()
    procs = [start_redis(binary, port, tmp_path / "before", *DATA_ARGS)]
    try:
        with agentbus_dashboard(bus_env(url, namespace), log) as base:
            async with httpx2.AsyncClient(timeout=TIMEOUT) as http:
                with anyio.fail_after(TIMEOUT):
                    async with http.stream("GET", base + "/dashboard/stream") as stream:
                        lines = stream.aiter_lines()
                        await change(url, namespace)
                        await next_changed(lines)

                        stop_redis(procs)
                        await log_says(log, "failed")  # its reader lost Redis, and said so
                        procs.append(start_redis(binary, port, tmp_path / "after", *DATA_ARGS))
                        await next_changed(lines)  # back: whatever changed meanwhile is fetched again
                        await log_says(log, "works again")

                        await change(url, namespace)
                        await next_changed(lines)
        reader = [line for line in log.read_text().splitlines() if "reader of the events" in line]
        assert len(reader) == 2, reader  # the outage once, its end once: no line per retry
    finally:
        stop_redis(procs[-1:])


async def test_a_reader_whose_connect_fails_tries_again_and_its_stream_hears_once_redis_is_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ``local://`` bus connects by starting its redis-server: while that fails, so does the reader's
    connect, which must be retried like any other failure, not end the reader (and the page's updates)."""
    redis_binary("redis-server") or pytest.skip("redis-server not installed")
    directory = Path(tempfile.mkdtemp(prefix="ab-", dir="/tmp"))  # a unix socket's path must be short
    local = LocalBus(directory)
    try:
        async with AgentBus.open(fresh_settings(f"local://{directory}"), reaper=False) as bus:
            local.stop()  # the local bus is gone, and cannot be started for now:
            monkeypatch.setenv("AGENTBUS_REDIS_SERVER", "/bin/false")
            response = Streams(None).respond(bus, None)
            assert isinstance(response, StreamingResponse)
            body = cast(AsyncGenerator[str, None], response.body_iterator)
            with anyio.fail_after(TIMEOUT):
                assert await anext(body) == "retry: 1000\n: connected\n\n"
                monkeypatch.delenv("AGENTBUS_REDIS_SERVER")  # the reader's next try starts it
                assert await anext(body) == "event: changed\ndata: {}\n\n"  # there: fetch again
                await bus.events.publish("tester", "note.after")
                assert await anext(body) == "event: changed\ndata: {}\n\n"
            await body.aclose()
    finally:
        local.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_token_holds_a_few_streams_and_a_revoked_tokens_streams_end_and_it_is_refused(
    guarded: tuple[Server, TokensFile],
) -> None:
    server, tokens = guarded
    namespace = fresh("shared")
    token, grant = tokens.create(namespace=namespace, agent="viewer", role="worker")
    other, _ = tokens.create(namespace=namespace, agent="ops", role="operator")
    mine, theirs = {"Authorization": f"Bearer {token}"}, {"Authorization": f"Bearer {other}"}
    base = server.base + "/dashboard/stream"
    async with AsyncExitStack() as stack, httpx2.AsyncClient(timeout=TIMEOUT) as http:
        with anyio.fail_after(TIMEOUT):
            opened = [
                await stack.enter_async_context(http.stream("GET", base, headers=mine))
                for _ in range(MAX_STREAMS_PER_TOKEN)
            ]
            assert [s.status_code for s in opened] == [200] * MAX_STREAMS_PER_TOKEN
            refused = await http.get(base, headers=mine)
            assert refused.status_code == 429, refused.text
            assert "Close another tab" in refused.json()["error"]["hint"]
            theirs_open = await stack.enter_async_context(http.stream("GET", base, headers=theirs))
            assert theirs_open.status_code == 200  # another token's share is its own

            tokens.revoke(grant.id)
            with anyio.fail_after(ENDED_WITHIN):
                for stream in opened:
                    assert [line async for line in stream.aiter_lines()][-1:] != ["event: changed"]
            after = await http.get(server.base + "/dashboard/snapshot", headers=mine)
            assert after.status_code == 401, after.text
            still = await http.get(server.base + "/dashboard/snapshot", headers=theirs)
            assert still.status_code == 200 and still.json()["namespace"] == namespace


async def test_agentbus_dashboard_serves_the_namespaces_it_lists_and_refuses_the_others(
    redis_url_real: str, tmp_path: Path
) -> None:
    first, second = fresh("first"), fresh("second")
    env = bus_env(redis_url_real, "unused")
    with agentbus_dashboard(env, tmp_path / "dashboard.log", "--namespace", f"{first},{second}") as base:
        async with httpx2.AsyncClient(timeout=TIMEOUT) as http:
            with anyio.fail_after(TIMEOUT):
                access = (await http.get(base + "/dashboard/access")).json()
                assert access["namespaces"] == [first, second] and access["namespace"] == first
                assert access["may_act"] is True and access["tokens"] is False
                snap = await http.get(base + "/dashboard/snapshot", params={"namespace": second})
                assert snap.json()["namespace"] == second
                unknown = await http.get(base + "/dashboard/snapshot", params={"namespace": "elsewhere"})
                assert unknown.status_code == 404, unknown.text
                assert first in unknown.json()["error"]["message"]
                assert "--namespace" in unknown.json()["error"]["hint"]
                params = {"namespace": second}
                async with http.stream("GET", base + "/dashboard/stream", params=params) as stream:
                    await change(redis_url_real, second)
                    await next_changed(stream.aiter_lines())


def test_agentbus_dashboard_refuses_a_namespace_list_with_a_bad_name() -> None:
    result = CliRunner().invoke(dashboard, ["--namespace", "good,not good"])
    assert result.exit_code == 2 and "'not good' is not a namespace" in result.output


async def test_a_server_stops_once_its_shutdown_grace_is_over_while_a_dashboard_tab_holds_its_stream(
    redis_url_real: str, tmp_path: Path
) -> None:
    with http_server(bus_env(redis_url_real, fresh("stop")), tmp_path / "server.log") as server:
        async with (
            httpx2.AsyncClient(timeout=TIMEOUT) as http,
            http.stream("GET", server.base + "/dashboard/stream") as stream,
        ):
            assert stream.status_code == 200
            server.proc.terminate()
            # uvicorn waits for open responses on shutdown, and a stream never ends by itself
            stopped = await anyio.to_thread.run_sync(lambda: server.proc.wait(timeout=STOPPED_WITHIN))
            assert stopped == -signal.SIGTERM  # uvicorn stopped cleanly, then raised the signal again
