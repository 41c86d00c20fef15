"""The dashboard page as a person uses it, in a real headless Chromium (`helpers/browser.py`): switching
namespaces, times that stay true without a fetch, a status line that says when the page is not live, and
a page that stays usable while the bus is busy. Changes are made through the core bus of the test's own
process (cheaper than MCP; the page cannot tell)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from helpers import fresh_settings
from helpers.browser import agentbus_dashboard, chromium_path, launched
from helpers.http_servers import (
    Server,
    bus_env,
    fresh,
    guarded_server,  # noqa: F401 (fixture)
    http_server,
)
from playwright.async_api import Browser, Page, Request, expect

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.server.tokens import TokensFile

pytestmark = pytest.mark.anyio

TIMEOUT = 90  # bound on one test, browser start included
SEEN_MS = 3_000  # the page shows a change within this
FLOOD_PER_SECOND, FLOOD_SECONDS = 20, 10  # 1,200 events a minute
# The stream coalesces changes into about 3 "changed" a second (COALESCE_SECONDS) and the page fetches one
# snapshot at a time: a page that fetched per event would ask 20 times a second here. A generous bound on
# coalescing, not a speed (how many it fetches is measured in bench/dashboard.py).
SNAPSHOTS_PER_SECOND = 6


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launched(chromium_path()) as running:
        yield running


@pytest.fixture
def two(redis_url_real: str, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """`agentbus dashboard --namespace a,b`: its base URL and the two namespaces."""
    first, second = fresh("first"), fresh("second")
    env = bus_env(redis_url_real, "unused")
    with agentbus_dashboard(env, tmp_path / "dashboard.log", "--namespace", f"{first},{second}") as base:
        yield base, first, second


async def open_page(browser: Browser, base: str) -> Page:
    page = await browser.new_page()
    page.set_default_timeout(SEEN_MS)
    await page.goto(base + "/")
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    await expect(page.locator("body[data-updated]")).to_have_count(1)  # its first snapshot is shown
    return page


def snapshots(page: Page) -> list[float]:
    """The times (monotonic) the page asks for a snapshot, from now on."""
    asked: list[float] = []

    def seen(request: Request) -> None:
        if "/dashboard/snapshot" in request.url:
            asked.append(time.monotonic())

    page.on("request", seen)
    return asked


async def test_the_picker_switches_between_the_namespaces_agentbus_dashboard_serves(
    two: tuple[str, str, str], redis_url_real: str, browser: Browser
) -> None:
    base, first, second = two
    with anyio.fail_after(TIMEOUT):
        for namespace in (first, second):
            async with AgentBus.open(fresh_settings(redis_url_real, namespace=namespace)) as bus:
                await bus.events.publish("tester", f"note.{namespace}")
        page = await open_page(browser, base)
        await expect(page.locator("#namespace")).to_have_text(first)
        await expect(page.locator("#events")).to_contain_text(f"note.{first}")
        picker = page.locator("#namespace-picker")
        await expect(picker).to_be_visible()
        await picker.select_option(second)
        await expect(page.locator("#namespace")).to_have_text(second)
        await expect(page.locator("#events")).to_contain_text(f"note.{second}")
        await expect(page.locator("#events")).not_to_contain_text(f"note.{first}")
        await expect(page.locator("#status")).to_have_text("live")
        # The page follows the namespace it shows now.
        async with AgentBus.open(fresh_settings(redis_url_real, namespace=second)) as bus:
            await bus.events.publish("tester", "note.later")
        await expect(page.locator("#events")).to_contain_text("note.later")


async def test_with_tokens_the_page_holds_one_per_namespace_and_forgets_a_revoked_one(
    guarded: tuple[Server, TokensFile], browser: Browser
) -> None:
    server, tokens = guarded
    first, second = fresh("first"), fresh("second")
    token_one, grant_one = tokens.create(namespace=first, agent="viewer", role="worker")
    token_two, _ = tokens.create(namespace=second, agent="viewer", role="worker")
    with anyio.fail_after(TIMEOUT):
        page = await browser.new_page()
        page.set_default_timeout(SEEN_MS)
        await page.goto(server.base + "/")
        await expect(page.locator("#login")).to_be_visible(timeout=10_000)
        await page.fill("#token", "abt_not-a-token")
        await page.click("#login button")
        await expect(page.locator("#login-note")).to_contain_text("not valid")
        await page.fill("#token", token_one)
        await page.click("#login button")
        await expect(page.locator("#namespace")).to_have_text(first)
        await expect(page.locator("#status")).to_have_text("live")

        await page.click("#add-token")
        await page.fill("#token", token_two)
        await page.click("#login button")
        await expect(page.locator("#namespace")).to_have_text(second)
        picker = page.locator("#namespace-picker")
        await picker.select_option(first)
        await expect(page.locator("#namespace")).to_have_text(first)
        await expect(page.locator("#status")).to_have_text("live")

        tokens.revoke(grant_one.id)  # its stream ends, its next request gets 401: the page moves on
        await expect(page.locator("#namespace")).to_have_text(second)
        await expect(picker).to_be_hidden()
        await expect(page.locator("#status")).to_have_text("live")


async def test_relative_times_tick_without_a_fetch_and_the_status_line_says_when_the_stream_is_down(
    browser: Browser, redis_url_real: str, tmp_path: Path
) -> None:
    namespace = fresh("live")
    with http_server(bus_env(redis_url_real, namespace), tmp_path / "server.log") as server:
        async with AgentBus.open(fresh_settings(redis_url_real, namespace=namespace)) as bus:
            await bus.presence.heartbeat("writer", note="drafting", ttl_seconds=600)
        with anyio.fail_after(TIMEOUT):
            page = await open_page(browser, server.base)
            asked = snapshots(page)
            seen = page.locator("#agents tr", has_text="writer").locator("[data-ago]")
            await expect(seen).to_contain_text("s ago")
            before = await seen.text_content()
            await expect(seen).not_to_have_text(before or "", timeout=5_000)  # it ticked by itself
            await expect(page.locator("#updated")).to_contain_text("updated")
            assert asked == [], "the page fetched a snapshot although nothing changed"

            server.proc.kill()  # the server is gone (a crash, a restart): the page says so
            await expect(page.locator("#status")).to_contain_text("reconnecting", timeout=10_000)
            await expect(page.locator("#status")).to_contain_text("stream down for")


async def test_the_page_answers_a_click_and_fetches_a_few_snapshots_a_second_under_1200_events_a_minute(
    browser: Browser, redis_url_real: str, tmp_path: Path
) -> None:
    namespace = fresh("busy")
    last = FLOOD_PER_SECOND * FLOOD_SECONDS - 1
    with http_server(bus_env(redis_url_real, namespace), tmp_path / "server.log") as server:
        async with AgentBus.open(fresh_settings(redis_url_real, namespace=namespace)) as bus:
            tasks = [{"key": f"t{i}", "title": f"step {i}", "capability": "busy"} for i in range(12)]
            created = await bus.workflows.create("tester", title="under load", tasks=tasks)
            with anyio.fail_after(TIMEOUT):
                page = await open_page(browser, server.base)
                asked = snapshots(page)
                row = page.locator(f'#workflows tr[data-workflow="{created.workflow_id}"]')
                await expect(row).to_contain_text("under load")

                async def flood() -> None:
                    for i in range(last + 1):
                        await bus.events.publish("tester", "load.tick", {"i": i})
                        await anyio.sleep(1 / FLOOD_PER_SECOND)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(flood)
                    await anyio.sleep(FLOOD_SECONDS / 2)
                    await row.click()  # in the thick of it: the page still answers a click
                    await expect(page.locator("#tasks tr", has_text="step 11")).to_contain_text("ready")
                # and it follows the bus to its last event, however many it coalesced on the way
                await expect(page.locator("#events")).to_contain_text(f'{{"i":{last}}}')
                await page.close()  # before the server stops, which would wait for the page's stream
        busiest = max(sum(1 for t in asked if s <= t < s + 1) for s in asked)
        assert busiest <= SNAPSHOTS_PER_SECOND, f"{busiest} snapshots in one second: changes not coalesced"
