"""The dashboard's DAG (static/dag.js) and task detail (static/detail.js, ``GET /dashboard/task``), in a
real headless Chromium on a real server process, the workflows made and worked through MCP sessions."""

from __future__ import annotations

from typing import Any

import anyio
import httpx2
import pytest
import test_dashboard_web as web
from helpers.browser import browser_fixture, chromium_fixture  # noqa: F401 (fixtures)
from helpers.http_servers import Server, connect, fresh
from playwright.async_api import Browser, Page, expect

from mcp_agentbus.core.task_detail import EVENTS_SCANNED

pytestmark = pytest.mark.anyio

# The fixtures of the dashboard's first browser tests: Debian's chromium and a server process.
server, open_page = web.server, web.open_page

TIMEOUT = 90  # bound on one test, browser start included; each finishes far sooner
DRAWN_MS = 10_000  # a followed workflow is drawn within this, its 200 tasks included

# Every node's box on the page, and any two that overlap (none may).
OVERLAPS = """() => {
  const rects = document.querySelectorAll('#dag-svg .dag-node rect');
  const boxes = [...rects].map((r) => r.getBoundingClientRect());
  const hits = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i], b = boxes[j];
    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) hits.push([i, j]);
  }
  return { count: boxes.length, hits, width: boxes.length ? boxes[0].width : 0 };
}"""

# Edges that pass behind a node other than their own two ends (sampled along each path): none may.
HIDDEN_EDGES = """() => {
  const nodes = [...document.querySelectorAll('#dag-svg .dag-node')];
  const hidden = [];
  for (const edge of document.querySelectorAll('#dag-svg .dag-edge')) {
    const m = edge.getScreenCTM(), length = edge.getTotalLength();
    for (let s = 1; s < 100; s++) {
      const q = edge.getPointAtLength((length * s) / 100), p = new DOMPoint(q.x, q.y).matrixTransform(m);
      for (const g of nodes) {
        if (g.dataset.task === edge.dataset.from || g.dataset.task === edge.dataset.to) continue;
        const b = g.querySelector('rect').getBoundingClientRect();
        if (p.x > b.left && p.x < b.right && p.y > b.top && p.y < b.bottom) hidden.push([edge.dataset.from,
          edge.dataset.to, g.dataset.task]);
      }
    }
  }
  return hidden;
}"""

# A fresh layout of the followed workflow, timed in the page (the redraw dag.js does when tasks change).
RELAYOUT_MS = """() => {
  const t0 = performance.now();
  DAG.shape = "";
  drawDag(state.snap.workflow);
  return performance.now() - t0;
}"""


async def follow(page: Page, workflow_id: str) -> None:
    await page.locator(f'#workflows tr[data-workflow="{workflow_id}"]').click()
    await expect(page.locator("#dag-view")).to_be_visible()


def node(page: Page, task_id: str) -> Any:
    return page.locator(f'#dag-svg .dag-node[data-task="{task_id}"]')


async def test_the_dag_has_a_node_per_task_an_edge_per_dependency_and_recolours_a_completed_task(
    browser: Browser, server: Server
) -> None:
    cap = fresh("dag")
    tasks = [
        {"key": "fetch", "title": "Fetch the sources", "capability": cap},
        {"key": "lint", "title": "Lint them", "capability": cap, "depends_on": ["fetch"]},
        {"key": "test", "title": "Test them", "capability": cap, "depends_on": ["fetch"]},
        {"key": "notes", "title": "Write the notes", "capability": cap},  # a root: its edge spans two columns
        {
            "key": "ship",
            "title": "Ship " + "a very long release name " * 4,
            "depends_on": ["lint", "test", "notes"],
        },
    ]
    with anyio.fail_after(TIMEOUT):
        page = await open_page(browser, server)
        async with connect(server, "auto") as bus:
            created = await bus.ok("create_workflow", {"title": "pipeline", "tasks": tasks})
            ids = created["task_ids"]
            await follow(page, created["workflow_id"])
            await expect(page.locator("#dag-svg .dag-node")).to_have_count(5)
            edges = await page.eval_on_selector_all(
                "#dag-svg .dag-edge", "(es) => es.map((e) => [e.dataset.from, e.dataset.to])"
            )
            assert sorted(edges) == sorted(
                [
                    [ids["fetch"], ids["lint"]],
                    [ids["fetch"], ids["test"]],
                    [ids["lint"], ids["ship"]],
                    [ids["test"], ids["ship"]],
                    [ids["notes"], ids["ship"]],
                ]
            )
            assert await page.evaluate(HIDDEN_EDGES) == []
            ship = node(page, ids["ship"])
            assert (await ship.locator("text").text_content() or "").endswith("…")
            assert "a very long release name " * 4 in (await ship.locator("title").text_content() or "")
            await expect(node(page, ids["fetch"])).to_have_class("dag-node state-ready")
            await expect(ship).to_have_class("dag-node state-blocked")
            layouts = await page.locator("#dag-view").get_attribute("data-layouts")

            async with connect(server, "legacy") as worker:  # an agent in another session does the work
                claim = await worker.ok("claim_task", {"agent": "fetcher", "capabilities": [cap]})
                assert claim["task"]["id"] == ids["fetch"]
                await expect(node(page, ids["fetch"])).to_have_class("dag-node state-claimed")
                await worker.ok(
                    "complete_task",
                    {
                        "agent": "fetcher",
                        "task_id": ids["fetch"],
                        "lease_token": claim["lease"]["lease_token"],
                        "result": {"files": 3},
                    },
                )
            await expect(node(page, ids["fetch"])).to_have_class("dag-node state-done")
            await expect(node(page, ids["lint"])).to_have_class("dag-node state-ready")
            # States changed, tasks did not: the nodes were recoloured, not laid out again.
            assert await page.locator("#dag-view").get_attribute("data-layouts") == layouts
            # A stream of events that change no task: the page follows it, the DAG is left alone.
            paints = await page.locator("#dag-view").get_attribute("data-paints")
            for n in range(60):
                await bus.ok("publish_event", {"topic": "chatter.note", "data": {"n": n}})
            await expect(page.locator("#events tbody tr").first).to_contain_text('{"n":59}')
            assert await page.locator("#dag-view").get_attribute("data-layouts") == layouts
            assert await page.locator("#dag-view").get_attribute("data-paints") == paints


async def test_a_200_task_workflow_is_drawn_with_no_two_nodes_overlapping(
    browser: Browser, server: Server
) -> None:
    # Ten stages of twenty: each task depends on two of the stage before it, so edges cross unless ordered.
    tasks: list[dict[str, Any]] = []
    for stage in range(10):
        for n in range(20):
            deps = [f"s{stage - 1}-{(n * 7) % 20}", f"s{stage - 1}-{(n * 3 + 1) % 20}"] if stage else []
            tasks.append({"key": f"s{stage}-{n}", "title": f"Stage {stage} part {n}", "depends_on": deps})
    with anyio.fail_after(TIMEOUT):
        page = await open_page(browser, server)
        async with connect(server, "auto") as bus:
            created = await bus.ok("create_workflow", {"title": "two hundred", "tasks": tasks})
        await page.locator(f'#workflows tr[data-workflow="{created["workflow_id"]}"]').click()
        await expect(page.locator("#dag-svg .dag-node")).to_have_count(200, timeout=DRAWN_MS)
        await expect(page.locator("#dag-svg .dag-edge")).to_have_count(_edges(tasks))
        drawn = await page.evaluate(OVERLAPS)
        assert drawn["count"] == 200 and drawn["hits"] == []
        relayout_ms = await page.evaluate(RELAYOUT_MS)
        assert relayout_ms < 2_000, relayout_ms  # generous: about 30 ms on a quiet machine
        await page.click("#dag-out")
        await page.click("#dag-out")
        smaller = await page.evaluate(OVERLAPS)
        assert smaller["hits"] == [] and smaller["width"] < drawn["width"]
        await expect(page.locator("#dag-zoom")).to_have_text("64%")


def _edges(tasks: list[dict[str, Any]]) -> int:
    """One edge per distinct dependency of each task."""
    return sum(len(set(t["depends_on"])) for t in tasks)


async def test_clicking_a_node_shows_the_task_with_the_holder_of_each_attempt(
    browser: Browser, server: Server
) -> None:
    cap = fresh("detail")
    with anyio.fail_after(TIMEOUT):
        page = await open_page(browser, server)
        async with connect(server, "auto") as bus, connect(server, "legacy") as workers:
            created = await bus.ok(
                "create_workflow",
                {"title": "flaky", "tasks": [{"key": "job", "title": "The flaky job", "capability": cap}]},
            )
            job = created["task_ids"]["job"]
            await workers.ok("claim_task", {"agent": "crasher", "capabilities": [cap], "lease_seconds": 1})
            await follow(page, created["workflow_id"])
            await node(page, job).click()
            attempts = page.locator("#task-attempts tbody tr")
            await expect(attempts).to_have_count(1)
            await expect(attempts.nth(0)).to_contain_text("crasher")
            await expect(attempts.nth(0)).to_contain_text("holding")
            await expect(page.locator("#task-detail")).to_contain_text("lease expires")
            # The lease lapses (the reaper takes it back), and another agent claims and finishes the job.
            claim = await workers.ok(
                "claim_task", {"agent": "rescuer", "capabilities": [cap], "wait_seconds": 5}
            )
            assert claim["task"]["id"] == job and claim["task"]["attempt"] == 2
            await workers.ok(
                "complete_task",
                {
                    "agent": "rescuer",
                    "task_id": job,
                    "lease_token": claim["lease"]["lease_token"],
                    "result": {"n": 1},
                },
            )
            await expect(attempts).to_have_count(2)
            await expect(attempts.nth(0)).to_contain_text("crasher")
            await expect(attempts.nth(0)).to_contain_text("expired")
            await expect(attempts.nth(1)).to_contain_text("rescuer")
            await expect(attempts.nth(1)).to_contain_text("done")
            await expect(page.locator("#task-detail dl")).to_contain_text("done")
            await expect(page.locator("#task-detail pre")).to_contain_text('"n": 1')
            await expect(page.locator("#task-events")).to_contain_text("task.reclaimed")
            await expect(node(page, job)).to_have_class("dag-node state-done selected")

            await page.click("#task-detail-close")
            await expect(page.locator("#task-detail")).to_be_hidden()
            await page.locator("#tasks tr", has_text="The flaky job").click()  # a task row opens it too
            await expect(attempts).to_have_count(2)


async def test_the_task_route_answers_the_detail_and_refuses_unknown_and_malformed_ids(
    server: Server,
) -> None:
    async with httpx2.AsyncClient(timeout=10) as http, connect(server, "auto") as bus:
        with anyio.fail_after(TIMEOUT):
            created = await bus.ok("create_task", {"title": "looked at", "capability": fresh("route")})
            got = await http.get(server.base + "/dashboard/task", params={"id": created["task_id"]})
            unknown = await http.get(server.base + "/dashboard/task", params={"id": "t-999999999"})
            malformed = await http.get(server.base + "/dashboard/task", params={"id": "../etc"})
            missing = await http.get(server.base + "/dashboard/task")
            rebound = await http.get(server.base + "/dashboard/task", headers={"Host": "evil.example:80"})

    assert got.status_code == 200 and got.headers["cache-control"] == "no-store"
    detail = got.json()
    assert set(detail) == {
        "task",
        "workflow_id",
        "description",
        "attempt_history",
        "events",
        "events_scanned",
        "now_ms",
    }
    assert detail["task"]["id"] == created["task_id"] and detail["task"]["state"] == "ready"
    assert detail["attempt_history"] == [] and detail["workflow_id"] is None
    assert [e["topic"] for e in detail["events"]] == ["task.created"]
    assert 1 <= detail["events_scanned"] <= EVENTS_SCANNED
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert "t-999999999" in unknown.json()["error"]["message"]
    for refused in (malformed, missing):
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_argument"
        assert refused.json()["error"]["message"].startswith("id "), refused.text  # as the query names it
    assert rebound.status_code == 421 and rebound.json()["error"]["code"] == "misdirected_request"
