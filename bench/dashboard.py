"""The dashboard as a person waits for it, in headless Chromium (Debian's `chromium`, driven by
Playwright): its first load (navigation → the workflows table filled), its update latency (a task
completed through MCP by another client → the page shows it done), and how many snapshots a second it
fetches while 1,200 events a minute stream (the stream coalesces them, COALESCE_SECONDS). p50 and p99 over
N runs as rows of `harness.py`, p95 and the fetch rate as figures.

    .venv/bin/python bench/dashboard.py [--quick] [--runs N] [--json PATH]

It starts its own redis-server and one `agentbus serve --transport http` process (stopped at the end).
Without chromium on PATH it says so and exits 0: timing is not a gate (see README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from harness import Figure, Row, make_row, table
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from playwright.async_api import Browser, Page, Request, async_playwright
from processes import BENCH_DIR, agentbus_http_spec, http_servers, own_redis
from workloads import call

from mcp_agentbus.server.dashboard_stream import COALESCE_SECONDS
from mcp_agentbus.settings import Settings

SECTION = "dashboard"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
SEEN_MS = 10_000  # bound on one wait for the page; a run past it fails the benchmark
TASKS = 40  # tasks in the workflow the page shows
FLOOD_PER_SECOND = 20  # 1,200 events a minute, published through MCP while the page is open


async def first_loads(browser: Browser, base: str, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        page = await browser.new_page()  # a context of its own: nothing cached
        started = time.perf_counter()
        await page.goto(base + "/")
        await page.locator("#workflows tbody tr[data-workflow]").first.wait_for(timeout=SEEN_MS)
        samples.append(time.perf_counter() - started)
        await page.close()
    return samples


def shows(state: str) -> str:
    """A page function: whether the tasks table shows the task (its argument) in `state`."""
    row = "document.querySelector(`#tasks tr[data-task='${id}']`)"
    return f"(id) => ({row}?.textContent || '').includes('{state}')"


async def updates(page: Page, client: Client, workflow_id: str, runs: int) -> list[float]:
    """Claim a task and wait for the page to show it and the stream to be quiet again (a change within
    COALESCE_SECONDS of the one before waits that much longer, by design); then time complete_task →
    the page's row of it says done."""
    await page.locator(f'#workflows tr[data-workflow="{workflow_id}"]').click()
    await page.locator("#tasks tbody tr[data-task]").first.wait_for(timeout=SEEN_MS)
    samples = []
    for _ in range(runs):
        claim = await call(client, "claim_task", {"agent": "bench-worker", "capabilities": ["bench-dash"]})
        task_id, lease = claim["task"]["id"], claim["lease"]["lease_token"]
        await page.wait_for_function(shows("claimed"), arg=task_id, polling="raf", timeout=SEEN_MS)
        await asyncio.sleep(COALESCE_SECONDS + 0.05)
        started = time.perf_counter()
        completing = {"agent": "bench-worker", "task_id": task_id, "lease_token": lease}
        await call(client, "complete_task", completing)
        await page.wait_for_function(shows("done"), arg=task_id, polling="raf", timeout=SEEN_MS)
        samples.append(time.perf_counter() - started)
    return samples


async def fetches_under_load(page: Page, client: Client, seconds: int) -> float:
    """Snapshots the page fetches a second while FLOOD_PER_SECOND events a second stream for `seconds`."""
    asked: list[str] = []

    def seen(request: Request) -> None:
        if "/dashboard/snapshot" in request.url:
            asked.append(request.url)

    page.on("request", seen)
    started = time.perf_counter()
    for i in range(FLOOD_PER_SECOND * seconds):  # paced to the schedule, however long each call takes
        await call(client, "publish_event", {"topic": "bench.tick", "data": {"i": i}})
        await asyncio.sleep(max(0.0, started + (i + 1) / FLOOD_PER_SECOND - time.perf_counter()))
    lasted = time.perf_counter() - started
    page.remove_listener("request", seen)
    return len(asked) / lasted


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[18] * 1000


async def benchmark(runs: int, chromium: str, workdir: Path) -> tuple[list[Row], list[Figure]]:
    with own_redis() as (url, _pid):
        settings = Settings(redis_url=url, namespace=f"bench-{uuid.uuid4().hex[:8]}")
        warnings: list[str] = []
        async with http_servers(warnings, [agentbus_http_spec(settings, "dashboard", workdir)], workdir) as [
            server
        ]:
            base = server.url.removesuffix("/mcp")
            async with Client(streamable_http_client(server.url), mode="auto") as client:
                tasks = [
                    {"key": f"t{i}", "title": f"step {i}", "capability": "bench-dash"} for i in range(TASKS)
                ]
                created = await call(client, "create_workflow", {"title": "bench", "tasks": tasks})
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                    try:
                        await first_loads(browser, base, 1)  # warm-up: the server's first requests
                        loads = await first_loads(browser, base, runs)
                        page = await browser.new_page()
                        await page.goto(base + "/")
                        latencies = await updates(page, client, created["workflow_id"], runs)
                        rate = await fetches_under_load(page, client, max(5, runs))
                    finally:
                        await browser.close()
        for warning in warnings:
            print(f"bench: WARNING: {warning}", file=sys.stderr)
    rows = [
        make_row(SECTION, "first load: navigation -> tables filled", loads),
        make_row(SECTION, "update: complete_task (MCP) -> page shows done", latencies),
    ]
    how = f"p95 of {runs} runs, headless Chromium"
    figures = [
        Figure(SECTION, "first load p95", p95(loads), "ms", how),
        Figure(SECTION, "update latency p95", p95(latencies), "ms", how),
        Figure(
            SECTION,
            "snapshot fetches under 1,200 events/min",
            rate,
            "fetches/s",
            f"{FLOOD_PER_SECOND} publish_event/s for {max(5, runs)} s, one page open",
        ),
    ]
    return rows, figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 runs each: checks that it runs (CI)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path, default=BENCH_DIR / "results" / "dashboard.json")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("bench/dashboard.py: chromium is not installed (apt-get install chromium); nothing measured")
        return
    runs = 3 if args.quick else args.runs
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agentbus-bench-dash-") as workdir:
        rows, figures = asyncio.run(benchmark(runs, chromium, Path(workdir)))
    print(table(rows, figures))
    print(f"\n{runs} runs each in {time.perf_counter() - started:.1f} s; JSON: {args.json}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {"rows": [asdict(row) for row in rows], "figures": [asdict(f) for f in figures]}
    args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
