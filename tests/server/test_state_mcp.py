"""set_state, get_state and the agentbus://state/{key} resource through the real MCP client: in process on
both backends and both eras, and across real server processes (HTTP and stdio) on one real Redis."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import pytest
from helpers import fresh_settings
from helpers.http_servers import bus_env, fresh, http_server
from helpers.http_servers import connect as connect_http
from helpers.mcp_session import connect, text_of
from helpers.subscriptions import ROOT, Watcher, on_updates, read_json, subscribed
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from pydantic import AnyUrl

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.server.app import build_server
from mcp_agentbus.server.resources import URL_SAFE
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio

TIMEOUT = 20  # bound on any one test's MCP traffic; every test finishes far sooner
WOKEN = 3.0  # bound on a wait (asked for 5 s, the servers' cap) that a write must end


async def test_an_agent_sets_compares_adds_lists_and_deletes_through_the_tools(
    settings: Settings, mode: str
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            made = await bus.ok(
                "set_state", {"key": "plan/current", "value": {"steps": ["a"]}, "if_version": 0}
            )
            stale = await bus.call(
                "set_state", {"key": "plan/current", "value": {"steps": []}, "if_version": 0}
            )
            added = await bus.ok("set_state", {"key": "plan/done", "increment": 2})
            await bus.ok("set_state", {"key": "plan/done", "increment": 1, "agent": "w2"})
            listed = await bus.ok("get_state", {"prefix": "plan/"})
            one = await bus.ok("get_state", {"key": "plan/done"})
            gone = await bus.ok("set_state", {"key": "plan/current", "delete": True})
            nothing = await bus.ok("set_state", {"key": "plan/current", "delete": True})
            after = await bus.ok("get_state", {"key": "plan/current"})

    assert (made["written"], made["version"], made["value"]) == (True, 1, {"steps": ["a"]})
    assert stale.is_error is not True and stale.structured_content is not None
    assert stale.structured_content["written"] is False
    assert (stale.structured_content["current_version"], stale.structured_content["current_value"]) == (
        1,
        {"steps": ["a"]},
    )
    assert "Not written: plan/current is at version 1" in text_of(stale)
    assert added["value"] == 2
    assert [(e["key"], e["value"], e["version"]) for e in listed["entries"]] == [
        ("plan/current", {"steps": ["a"]}, 1),
        ("plan/done", 3, 2),
    ]
    [entry] = one["entries"]
    assert entry["updated_by"] == "w2" and entry["updated_at"].endswith("Z") and entry["expires_at"] is None
    assert (gone["written"], gone["version"]) == (True, 2)
    assert nothing["written"] is False and nothing["notices"] == [
        "plan/current is not set: nothing was deleted."
    ]
    assert after["entries"] == []


async def test_a_value_that_is_no_number_refuses_an_increment_with_a_hint(
    settings: Settings, mode: str
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            await bus.ok("set_state", {"key": "status", "value": "green"})
            error = await bus.err(
                "set_state", {"key": "status", "increment": 1}, "wrong_state", "not a number"
            )
            kept = await bus.ok("get_state", {"key": "status"})
    assert "value" in error["hint"]
    assert [(e["value"], e["version"]) for e in kept["entries"]] == [("green", 1)]


async def test_the_namespace_bound_refuses_a_new_key_with_a_hint(redis_url: str, mode: str) -> None:
    settings = fresh_settings(redis_url, state_keys_max=1)
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            await bus.ok("set_state", {"key": "a", "value": 1})
            error = await bus.err(
                "set_state", {"key": "b", "value": 1}, "invalid_argument", "1 shared-state keys"
            )
            listed = await bus.ok("get_state", {"prefix": ""})
    assert "delete" in error["hint"]
    assert [e["key"] for e in listed["entries"]] == ["a"]


async def test_get_state_waits_for_a_write_made_through_another_server(settings: Settings, mode: str) -> None:
    got: dict[str, Any] = {}
    async with connect(settings, mode) as waiter, connect(settings, mode) as writer:
        await writer.ok("set_state", {"key": "go", "value": False})

        async def wait() -> None:
            args = {"key": "go", "after_version": 1, "wait_seconds": 5}
            got["read"] = await waiter.ok("get_state", args)

        with anyio.fail_after(WOKEN):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await anyio.sleep(0.2)
                await writer.ok("set_state", {"key": "go", "value": True})
    assert [(e["value"], e["version"]) for e in got["read"]["entries"]] == [(True, 2)]


@asynccontextmanager
async def watching(settings: Settings, mode: str, uri: str) -> AsyncIterator[Watcher]:
    watcher = Watcher()
    handler = on_updates(watcher) if mode == "legacy" else None
    async with (
        Client(build_server(settings), mode=mode, message_handler=handler) as client,
        subscribed(client, mode, [uri], watcher),
    ):
        yield watcher


async def test_the_state_resource_reads_a_key_and_tells_subscribers_of_sets_and_deletes(
    settings: Settings, mode: str
) -> None:
    uri, other = f"{ROOT}state/plan/current", f"{ROOT}state/plan/other"
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as writer, watching(settings, mode, uri) as watcher:
            await watcher.drain()
            await writer.ok("set_state", {"key": "plan/current", "value": {"n": 1}})
            await watcher.expect(uri)
            assert watcher.client is not None
            view = await read_json(watcher.client, uri)
            assert [(e["key"], e["value"], e["version"]) for e in view["entries"]] == [
                ("plan/current", {"n": 1}, 1)
            ]
            await writer.ok(
                "set_state", {"key": "plan/other", "value": 1}
            )  # another key: no update of this one
            await writer.ok("set_state", {"key": "plan/current", "delete": True})
            await watcher.expect(uri)
            assert (await read_json(watcher.client, uri))["entries"] == []
            await watcher.exactly()
    assert watcher.seen[other] == 0


async def test_increments_through_two_server_processes_and_a_bus_sum_exactly(
    redis_url_real: str, tmp_path: Path
) -> None:
    """50 concurrent increments: 20 through each of two real HTTP server processes, 10 through a bus in
    this process, all on one real Redis."""
    namespace = fresh("state")
    env = bus_env(redis_url_real, namespace)
    versions: list[int] = []
    with (
        http_server(env, tmp_path / "a.log") as a,
        http_server(env, tmp_path / "b.log") as b,
        anyio.fail_after(60),
    ):
        async with (
            connect_http(a, "auto") as on_a,
            connect_http(b, "legacy") as on_b,
            AgentBus.open(Settings(redis_url=redis_url_real, namespace=namespace)) as bus,
        ):

            async def over_mcp(client: Any, n: int) -> None:
                r = await client.ok("set_state", {"key": "count", "increment": 1, "agent": f"agent-{n}"})
                versions.append(r["version"])

            async def in_process(n: int) -> None:
                r = await bus.state.set(f"local-{n}", "count", increment=1)
                assert r.version is not None
                versions.append(r.version)

            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(over_mcp, on_a, n)
                    tg.start_soon(over_mcp, on_b, n)
                for n in range(10):
                    tg.start_soon(in_process, n)
            [entry] = (await bus.state.get("count")).entries
        a.assert_clean_log()
        b.assert_clean_log()
    assert (entry.value, entry.version) == (50, 50)
    assert sorted(versions) == list(range(1, 51))


async def test_a_wait_in_one_server_process_ends_on_a_write_through_another(
    redis_url_real: str, tmp_path: Path
) -> None:
    env = bus_env(redis_url_real, fresh("state-wait"))
    got: dict[str, Any] = {}
    with http_server(env, tmp_path / "a.log") as a, http_server(env, tmp_path / "b.log") as b:
        async with connect_http(a, "auto") as waiter, connect_http(b, "legacy") as writer:
            await writer.ok("set_state", {"key": "phase", "value": "build"})

            async def wait() -> None:
                args = {"key": "phase", "after_version": 1, "wait_seconds": 5}
                got["read"] = await waiter.ok("get_state", args)

            with anyio.fail_after(WOKEN):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(wait)
                    await anyio.sleep(0.3)
                    await writer.ok("set_state", {"key": "phase", "value": "test"})
    assert [(e["value"], e["version"]) for e in got["read"]["entries"]] == [("test", 2)]


async def test_a_key_a_url_type_percent_encodes_is_read_and_pushed_under_that_uri(settings: Settings) -> None:
    key = "notes/résumé 1"
    uri = f"{ROOT}state/{quote(key, safe=URL_SAFE)}"
    assert str(AnyUrl(uri)) == uri  # what a client's URL type would send
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, "legacy") as writer, watching(settings, "legacy", uri) as watcher:
            await watcher.drain()
            await writer.ok("set_state", {"key": key, "value": "v"})
            await watcher.expect(uri)
            assert watcher.client is not None
            view = await read_json(watcher.client, uri)
    assert [(e["key"], e["value"]) for e in view["entries"]] == [(key, "v")]


async def test_get_state_with_agent_carries_that_agents_notices(settings: Settings, mode: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            await bus.ok("send_message", {"agent": "planner", "to": "reader", "body": "stop work on auth"})
            read = await bus.ok("get_state", {"key": "plan", "agent": "reader"})
            listed = await bus.ok("get_state", {"prefix": "", "agent": "reader"})
    for result in (read, listed):
        assert any("unread" in n and "planner" in n for n in result["notices"]), result


@asynccontextmanager
async def over_stdio(
    redis_url: str, namespace: str, agent: str, log: Path, mode: str
) -> AsyncIterator[Client]:
    """`agentbus serve` as a stdio subprocess (as hosts run it) and a client session to it."""
    env = {**bus_env(redis_url, namespace), "AGENTBUS_AGENT": agent}
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_agentbus", "serve"], env=env)
    with log.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:
            yield client


async def test_two_stdio_server_processes_share_state_and_its_waits(
    redis_url_real: str, tmp_path: Path
) -> None:
    namespace = fresh("state-stdio")
    got: dict[str, Any] = {}
    with anyio.fail_after(30):
        async with (
            over_stdio(redis_url_real, namespace, "agent-a", tmp_path / "a.log", "legacy") as a,
            over_stdio(redis_url_real, namespace, "agent-b", tmp_path / "b.log", "auto") as b,
        ):

            async def add(client: Client) -> None:
                result = await client.call_tool("set_state", {"key": "done", "increment": 1})
                assert result.is_error is not True, text_of(result)

            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(add, a if n % 2 else b)

            async def wait_in_a() -> None:
                args = {"key": "done", "after_version": 20, "wait_seconds": 5}
                got["read"] = (await a.call_tool("get_state", args)).structured_content

            with anyio.fail_after(WOKEN):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(wait_in_a)
                    await anyio.sleep(0.3)
                    await add(b)
    assert [(e["value"], e["version"], e["updated_by"]) for e in got["read"]["entries"]] == [
        (21, 21, "agent-b")
    ]
    for log in (tmp_path / "a.log", tmp_path / "b.log"):
        assert "Traceback" not in log.read_text()
