"""The dashboard's charts, dead tasks and inbox threads in a real headless Chromium, on a real server
process changed through MCP (the browser, server and MCP fixtures are those of test_dashboard_web)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime

import anyio
import pytest
from helpers.browser import browser_fixture, chromium_fixture  # noqa: F401 (fixtures)
from helpers.http_servers import Server, connect, fresh
from playwright.async_api import Browser, expect
from test_dashboard_web import (  # noqa: F401 - fixtures used by name
    TIMEOUT,
    open_page,
    server,
)

pytestmark = pytest.mark.anyio

COMPLETED = 3
MINUTE_MS = 60_000
STATS_TICK_S = 20  # charts.js STATS_TICK_MS: a new minute is drawn within this without any change
QUIET_S = 15  # the last part needs this long without the minute changing: it starts no later than 45 s in


def minute_of(iso: str) -> int:
    """The start (ms, as the chart's `data-minute`) of the minute a time of the bus falls in."""
    at = round(datetime.fromisoformat(iso).timestamp() * 1000)
    return at - at % MINUTE_MS


async def test_the_charts_show_each_minutes_completions_and_a_queues_depth(
    browser: Browser,
    server: Server,  # noqa: F811
) -> None:
    cap = fresh("chart")
    with anyio.fail_after(TIMEOUT + 60):  # + the wait for a minute with QUIET_S left, below
        page = await open_page(browser, server)
        done: list[str] = []
        async with connect(server, "auto") as bus:
            for n in range(COMPLETED + 2):
                await bus.ok("create_task", {"title": f"job {n}", "capability": cap})
            for _ in range(COMPLETED):
                claim = await bus.ok("claim_task", {"agent": "worker", "capabilities": [cap]})
                done.append(claim["task"]["id"])
                await bus.ok(
                    "complete_task",
                    {
                        "agent": "worker",
                        "task_id": claim["task"]["id"],
                        "lease_token": claim["lease"]["lease_token"],
                    },
                )
        chart = page.locator("#throughput-chart svg")
        await expect(chart).to_have_attribute("data-hour-done", str(COMPLETED))
        # Each completion is counted in the minute of its Redis time, which the task's record keeps: the
        # three may fall in one minute or two, and each bar shows its own.
        counted: Counter[int] = Counter()
        for task_id in done:
            detail = await page.request.get(f"{server.base}/dashboard/task?id={task_id}")
            counted[minute_of((await detail.json())["task"]["updated_at"])] += 1
        for minute, n in counted.items():
            bar = page.locator(f'#throughput-chart g.minute[data-minute="{minute}"]')
            await expect(bar).to_have_attribute("data-done", str(n))
            await expect(bar.locator("title")).to_contain_text(f"{n} completed")
        depth = page.locator(f'#depth tr[data-cap="{cap}"]')
        await expect(depth).to_have_attribute("data-ready", "2")
        await expect(depth).to_contain_text("2")

        # A change the charts do not show (an agent's note) fetches the stats again but redraws nothing.
        # A new minute moves every bar (a redraw), so this starts with the current minute drawn and
        # QUIET_S of it left.
        left = 60 - time.time() % 60
        if left < QUIET_S:
            await anyio.sleep(left + 0.2)
        minute = int(time.time() * 1000) // MINUTE_MS * MINUTE_MS
        newest = page.locator("#throughput-chart g.minute").last
        await expect(newest).to_have_attribute("data-minute", str(minute), timeout=(STATS_TICK_S + 5) * 1000)
        await page.evaluate("document.querySelector('#throughput-chart svg').dataset.kept = 'yes'")
        async with (
            page.expect_response("**/dashboard/stats", timeout=10_000) as answer,
            connect(server, "auto") as bus,
        ):
            await bus.ok("heartbeat", {"agent": "worker", "note": "resting"})
        stats = await (await answer.value).json()
        assert stats["minutes"][-1] == minute, "the minute ended: the test took over QUIET_S seconds"
        await expect(page.locator("#agents")).to_contain_text("resting")
        drawn = "(s) => drawn.throughput === JSON.stringify([s.minutes, s.done, s.failed, s.dead])"
        await page.wait_for_function(drawn, arg=stats)  # charts.js has taken this answer in
        await expect(chart).to_have_attribute("data-kept", "yes")


async def test_a_dead_task_shows_in_the_dead_table(browser: Browser, server: Server) -> None:  # noqa: F811
    cap = fresh("dead")
    with anyio.fail_after(TIMEOUT):
        page = await open_page(browser, server)
        async with connect(server, "auto") as bus:
            await bus.ok("create_task", {"title": "doomed import", "capability": cap})
            claim = await bus.ok("claim_task", {"agent": "worker", "capabilities": [cap]})
            await bus.ok(
                "fail_task",
                {
                    "agent": "worker",
                    "task_id": claim["task"]["id"],
                    "lease_token": claim["lease"]["lease_token"],
                    "error": "the file is corrupt",
                    "retry": False,
                },
            )
        dead = page.locator(f'#dead tr[data-task="{claim["task"]["id"]}"]')
        await expect(dead).to_contain_text("doomed import")
        await expect(dead).to_contain_text("the file is corrupt")


async def test_an_agents_inbox_shows_its_threads_and_looking_leaves_them_unread(
    browser: Browser,
    server: Server,  # noqa: F811
) -> None:
    agent = fresh("reader")
    with anyio.fail_after(TIMEOUT):
        page = await open_page(browser, server)
        async with connect(server, "auto") as bus:
            await bus.ok("heartbeat", {"agent": agent, "status": "idle"})  # on the agents table
            sent = await bus.ok(
                "send_message",
                {"agent": "lead", "to": agent, "subject": "next step", "body": "please check the parser"},
            )
            await page.locator("#agents tbody tr", has_text=agent).click()
            thread = page.locator(f'#threads article[data-thread="{sent["thread_id"]}"]')
            await expect(thread).to_contain_text("next step")
            message = thread.locator("tbody tr", has_text="please check the parser")
            await expect(message).to_contain_text("lead")
            await expect(message).to_have_class("unread")

            read = await bus.ok("read_inbox", {"agent": agent})  # looking consumed nothing
            assert [m["body"] for m in read["messages"]] == ["please check the parser"]
            await expect(message).not_to_have_class("unread")  # and the page follows the read
