"""The web dashboard of `agentbus serve --transport http`, in a real headless Chromium: a real server
process on a real Redis, changed through MCP by a client session of the test, shown by the page.

Chromium is Debian's (`helpers/browser.py`): missing, these tests skip locally and fail under CI=true.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import httpx2
import pytest
from helpers.browser import agentbus_dashboard, browser_fixture, chromium_fixture  # noqa: F401 (fixtures)
from helpers.http_servers import (
    Server,
    bus_env,
    connect,
    fresh,
    guarded_server,  # noqa: F401 (fixture)
    http_server,
)
from playwright.async_api import Browser, Page, expect

from mcp_agentbus.server.dashboard_stream import MAX_STREAMS
from mcp_agentbus.server.tokens import TokensFile

pytestmark = pytest.mark.anyio

TIMEOUT = 60  # bound on one test, browser start included; each finishes far sooner
SEEN_MS = 3_000  # the page shows a change within this (it refetches on the stream's "changed" event)


@pytest.fixture
def server(redis_url_real: str, tmp_path: Path) -> Iterator[Server]:
    with http_server(bus_env(redis_url_real, fresh("dash")), tmp_path / "server.log") as running:
        yield running
        running.assert_clean_log()


async def open_page(browser: Browser, server: Server) -> Page:
    page = await browser.new_page()
    page.set_default_timeout(SEEN_MS)
    await page.goto(server.base + "/")
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    return page


async def test_the_page_shows_a_workflow_and_follows_its_tasks_as_agents_work(
    server: Server, browser: Browser
) -> None:
    cap = fresh("dash")
    with anyio.fail_after(TIMEOUT):
        page = await open_page(browser, server)
        async with connect(server, "auto") as bus:
            created = await bus.ok(
                "create_workflow",
                {
                    "title": "release notes",
                    "tasks": [
                        {"key": "draft", "title": "Draft them", "capability": cap},
                        {"key": "check", "title": "Check them", "capability": cap, "depends_on": ["draft"]},
                    ],
                },
            )
            wf = created["workflow_id"]
            row = page.locator(f'#workflows tr[data-workflow="{wf}"]')
            await expect(row).to_contain_text("release notes")
            await expect(row).to_contain_text("0/2")
            await expect(page.locator("#queues")).to_contain_text(cap)

            await row.click()
            draft = page.locator("#tasks tr", has_text="Draft them")
            await expect(draft).to_contain_text("ready")

            # Another session (an agent) claims and completes the first task: the page follows.
            async with connect(server, "legacy") as worker:
                claim = await worker.ok("claim_task", {"agent": "writer", "capabilities": [cap]})
                await expect(draft).to_contain_text("claimed")
                await expect(draft).to_contain_text("writer")
                await worker.ok(
                    "heartbeat",
                    {
                        "agent": "writer",
                        "status": "busy",
                        "note": "drafting",
                        "progress": {"task_id": claim["task"]["id"], "percent": 40, "message": "half"},
                    },
                )
                writer = page.locator("#agents tr", has_text="writer")
                await expect(writer).to_contain_text("drafting")
                await expect(writer).to_contain_text("s ago")
                await expect(writer).to_contain_text(claim["task"]["id"])
                await expect(draft).to_contain_text("40% half")
                await worker.ok(
                    "complete_task",
                    {
                        "agent": "writer",
                        "task_id": claim["task"]["id"],
                        "lease_token": claim["lease"]["lease_token"],
                        "result": {"ok": True},
                    },
                )
            await expect(draft).to_contain_text("done")
            await expect(row).to_contain_text("1/2")
            await expect(page.locator("#tasks tr", has_text="Check them")).to_contain_text("ready")
            events = page.locator("#events tbody tr")
            await expect(events.first).to_contain_text("task.")
            await page.fill("#topic-filter", "workflow.")
            await expect(page.locator("#events tbody")).not_to_contain_text("task.")


async def test_the_stream_says_changed_when_the_namespace_changes_and_streams_are_bounded(
    server: Server,
) -> None:
    async with AsyncExitStack() as stack, httpx2.AsyncClient(timeout=10) as http:
        with anyio.fail_after(TIMEOUT):
            first = await stack.enter_async_context(http.stream("GET", server.base + "/dashboard/stream"))
            assert first.status_code == 200
            assert first.headers["content-type"].startswith("text/event-stream")
            lines = first.aiter_lines()
            async with connect(server, "auto") as bus:
                await bus.ok("create_task", {"title": "seen", "capability": fresh("dash")})
                assert "event: changed" in [line async for line in _until_changed(lines)]
            for _ in range(MAX_STREAMS - 1):
                more = await stack.enter_async_context(http.stream("GET", server.base + "/dashboard/stream"))
                assert more.status_code == 200
            refused = await http.get(server.base + "/dashboard/stream")
            assert refused.status_code == 503
            assert "Close a dashboard tab" in refused.json()["error"]["hint"]
            await stack.aclose()  # every tab closed: their slots come free
            statuses = []  # the server hears of the closed streams a moment later: a bounded look
            for _ in range(50):
                statuses.append(await _stream_status(http, server))
                if statuses[-1] != 503:
                    break
                await anyio.sleep(0.1)
            assert statuses[-1] == 200, statuses


async def _stream_status(http: httpx2.AsyncClient, server: Server) -> int:
    async with http.stream("GET", server.base + "/dashboard/stream") as stream:
        return stream.status_code


async def test_the_dashboard_refuses_a_foreign_host_and_an_unknown_workflow_clearly(server: Server) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        for path in ("/", "/dashboard/snapshot", "/dashboard/stream"):
            rebound = await http.get(server.base + path, headers={"Host": "evil.example:80"})
            assert rebound.status_code == 421, (path, rebound.text)
            foreign = await http.get(server.base + path, headers={"Origin": "http://evil.example"})
            assert foreign.status_code == 403, (path, foreign.text)
        unknown = await http.get(server.base + "/dashboard/snapshot", params={"workflow": "wf-999999999"})
        assert unknown.status_code == 404, unknown.text
        assert (
            unknown.json()["error"]["code"] == "not_found"
            and "wf-999999999" in unknown.json()["error"]["message"]
        )


async def _until_changed(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    async for line in lines:
        yield line
        if line == "event: changed":
            return


async def test_with_a_tokens_file_the_dashboard_data_needs_a_valid_token(
    guarded: tuple[Server, TokensFile], browser: Browser
) -> None:
    server, tokens = guarded
    namespace = fresh("mine")
    token, _ = tokens.create(namespace=namespace, agent="viewer", role="all")
    with anyio.fail_after(TIMEOUT):
        async with httpx2.AsyncClient(timeout=10) as http:
            for path in ("/dashboard/snapshot", "/dashboard/stream"):
                for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": token}):
                    refused = await http.get(server.base + path, headers=headers)
                    assert refused.status_code == 401, (path, headers, refused.text)
                    assert "Authorization: Bearer" in refused.json()["error"]["hint"]
            home = await http.get(server.base + "/")
            assert home.status_code == 200 and "agentbus" in home.text
            snap = await http.get(
                server.base + "/dashboard/snapshot", headers={"Authorization": f"Bearer {token}"}
            )
            assert snap.status_code == 200 and snap.json()["namespace"] == namespace

        page = await browser.new_page()
        await page.goto(server.base + "/")
        await expect(page.locator("#login")).to_be_visible(timeout=10_000)
        await page.fill("#token", token)
        await page.click("#login button")
        await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
        await expect(page.locator("#namespace")).to_have_text(namespace)


@pytest.fixture
def dashboard_cli(redis_url_real: str, server: Server, tmp_path: Path) -> Iterator[str]:
    """`agentbus dashboard` on the namespace of `server` (whose MCP endpoint changes it): its base URL."""
    env = {**bus_env(redis_url_real, "unused"), "AGENTBUS_NAMESPACE": _namespace_of(server)}
    with agentbus_dashboard(env, tmp_path / "dashboard.log") as base:
        yield base


def _namespace_of(server: Server) -> str:
    return str(httpx2.get(server.base + "/dashboard/snapshot", timeout=10).json()["namespace"])


async def test_agentbus_dashboard_serves_the_page_and_its_stream_without_an_mcp_endpoint(
    server: Server, dashboard_cli: str
) -> None:
    cap = fresh("cli")
    async with httpx2.AsyncClient(timeout=10) as http:
        with anyio.fail_after(TIMEOUT):
            assert (await http.post(dashboard_cli + "/mcp", json={})).status_code == 404
            async with http.stream("GET", dashboard_cli + "/dashboard/stream") as stream:
                assert stream.status_code == 200
                async with connect(server, "auto") as bus:
                    await bus.ok("create_task", {"title": "seen from the cli", "capability": cap})
                assert "event: changed" in [line async for line in _until_changed(stream.aiter_lines())]
            snap = (await http.get(dashboard_cli + "/dashboard/snapshot")).json()
            assert snap["ready"] == {cap: 1}
