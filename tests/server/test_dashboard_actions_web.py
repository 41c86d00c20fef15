"""A person acts from the dashboard in a real headless Chromium, and an agent hears of it through MCP on
its next call: a real `agentbus serve --transport http` process on a real Redis, the page in the
browser, the agent a client session of the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from helpers.browser import browser_fixture, chromium_fixture  # noqa: F401 (fixtures)
from helpers.http_servers import Server, bus_env, connect, fresh, http_server
from helpers.tokens import connect_as
from playwright.async_api import Browser, Page, expect

from mcp_agentbus.server.tokens import TokensFile

pytestmark = pytest.mark.anyio

TIMEOUT = 60  # bound on one test, browser start included; each finishes far sooner
SEEN_MS = 3_000  # the page shows a change within this (it refetches on the stream's "changed" event)


@pytest.fixture
def server(redis_url_real: str, tmp_path: Path) -> Iterator[Server]:
    with http_server(bus_env(redis_url_real, fresh("act")), tmp_path / "server.log") as running:
        yield running
        running.assert_clean_log()


async def open_page(browser: Browser, server: Server, token: str | None = None) -> Page:
    page = await browser.new_page()
    page.set_default_timeout(SEEN_MS)
    await page.goto(server.base + "/")
    if token is not None:
        await expect(page.locator("#login")).to_be_visible(timeout=10_000)
        await page.fill("#token", token)
        await page.click("#login button")
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    return page


async def test_a_message_from_the_page_reaches_the_agents_next_read_inbox_from_human(
    browser: Browser, server: Server
) -> None:
    with anyio.fail_after(TIMEOUT):
        page = await open_page(browser, server)
        await expect(page.locator("#act")).to_be_visible()
        await page.fill("#send-to", "worker-1")
        await page.fill("#send-body", "Please stop after step 5.")
        await page.click("#send button")
        await expect(page.locator("#action-line")).to_contain_text("Sent to worker-1 as human (message ")
        await expect(page.locator("#send-body")).to_have_value("")
        async with connect(server, "legacy") as agent:
            inbox = await agent.ok("read_inbox", {"agent": "worker-1"})
        assert [(m["from"], m["body"]) for m in inbox["messages"]] == [("human", "Please stop after step 5.")]


async def test_a_cancel_confirmed_on_the_page_takes_the_lease_from_the_agent(
    browser: Browser, server: Server
) -> None:
    cap = fresh("act")
    with anyio.fail_after(TIMEOUT):
        page = await open_page(browser, server)
        async with connect(server, "auto") as agent:
            created = await agent.ok(
                "create_workflow",
                {"title": "refactor", "tasks": [{"key": "a", "title": "Rename", "capability": cap}]},
            )
            claim = await agent.ok("claim_task", {"agent": "worker-2", "capabilities": [cap]})
            task_id = claim["task"]["id"]
            await page.locator(f'#workflows tr[data-workflow="{created["workflow_id"]}"]').click()
            row = page.locator(f'#tasks tr[data-task="{task_id}"]')
            await expect(row).to_contain_text("worker-2")

            await row.locator("button.act-cancel").click()  # asked first; "Keep it" leaves it alone
            dialog = page.locator("#confirm")
            await expect(dialog).to_be_visible()
            await expect(dialog).to_contain_text(f"Cancel task {task_id}")
            await expect(dialog).to_contain_text("held by worker-2? Its holder loses its lease at once")
            await dialog.get_by_role("button", name="Keep it").click()
            await expect(dialog).to_be_hidden()
            await expect(row).to_contain_text("claimed")

            await row.locator("button.act-cancel").click()
            await page.fill("#confirm-reason", "the plan changed")
            await page.click("#confirm-yes")
            await expect(page.locator("#action-line")).to_contain_text(f"Cancelled task {task_id} as human")
            await expect(row).to_contain_text("cancelled")
            await agent.err(
                "complete_task",
                {"agent": "worker-2", "task_id": task_id, "lease_token": claim["lease"]["lease_token"]},
                "lease_lost",
            )
            await expect(row.locator("button.act-retry")).to_be_visible()  # a cancelled task can run again
            await row.locator("button.act-retry").click()
            await expect(row).to_contain_text("ready")
            again = await agent.ok("claim_task", {"agent": "worker-2", "capabilities": [cap]})
            assert again["task"]["id"] == task_id


async def test_a_lock_released_from_the_page_is_told_to_its_holder_on_its_next_call(
    browser: Browser, server: Server
) -> None:
    with anyio.fail_after(TIMEOUT):
        page = await open_page(browser, server)
        async with connect(server, "auto") as agent:
            held = await agent.ok("acquire_lock", {"agent": "worker-3", "resource": "src/app.py"})
            row = page.locator('#locks tr[data-resource="src/app.py"]')
            await row.locator("button.act-release").click()
            dialog = page.locator("#confirm")
            await expect(dialog).to_contain_text(
                "Release the lock on src/app.py held by worker-3? worker-3 loses it at once"
            )
            await page.click("#confirm-yes")
            await expect(page.locator("#action-line")).to_contain_text(
                f"Released the lock on src/app.py held by worker-3 (fencing token {held['fencing_token']})"
            )
            await expect(page.locator("#locks")).not_to_contain_text("src/app.py")

            beat = await agent.ok("heartbeat", {"agent": "worker-3"})
            assert any("Your lock on src/app.py was revoked by human" in n for n in beat["notices"]), beat
            late = await agent.ok(
                "release_lock",
                {"agent": "worker-3", "resource": "src/app.py", "lock_token": held["lock_token"]},
            )
            assert late["released"] is False and "revoked by human" in late["reason"], late
            again = await agent.ok("acquire_lock", {"agent": "worker-4", "resource": "src/app.py"})
            assert again["fencing_token"] > held["fencing_token"]


@pytest.fixture
def guarded(redis_url_real: str, tmp_path: Path) -> Iterator[tuple[Server, TokensFile, str]]:
    namespace = fresh("act")
    tokens = TokensFile(tmp_path / "tokens.json")
    tokens.create(namespace=namespace, agent="planner", role="all")  # tokens are required from the start
    env = {**bus_env(redis_url_real, fresh("unused")), "AGENTBUS_TOKENS_FILE": str(tokens.path)}
    with http_server(env, tmp_path / "server.log") as running:
        yield running, tokens, namespace
        running.assert_clean_log()


async def test_an_operator_token_acts_as_its_agent_and_a_viewer_token_sees_no_buttons(
    browser: Browser, guarded: tuple[Server, TokensFile, str]
) -> None:
    server, tokens, namespace = guarded
    operator, _ = tokens.create(namespace=namespace, agent="alice", role="operator")
    viewer, _ = tokens.create(namespace=namespace, agent="worker-*", role="worker")
    with anyio.fail_after(TIMEOUT):
        async with connect_as(server, "auto", viewer) as agent:
            await agent.ok("acquire_lock", {"agent": "worker-5", "resource": "docs/"})

            watching = await open_page(browser, server, viewer)
            await expect(watching.locator('#locks tr[data-resource="docs/"]')).to_contain_text("worker-5")
            await expect(watching.locator("#act")).to_be_hidden()
            await expect(watching.locator("#locks button")).to_have_count(0)

            acting = await open_page(browser, server, operator)
            await expect(
                acting.locator('#locks tr[data-resource="docs/"] button.act-release')
            ).to_be_visible()
            await acting.fill("#send-to", "worker-5")
            await acting.fill("#send-body", "docs/ is yours until noon")
            await acting.click("#send button")
            await expect(acting.locator("#action-line")).to_contain_text("Sent to worker-5 as alice")
            inbox = await agent.ok("read_inbox", {"agent": "worker-5"})
            assert [m["from"] for m in inbox["messages"]] == ["alice"]
