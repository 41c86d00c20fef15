"""The README's dashboard screenshots: a believable scene on a bus of its own, photographed in headless
Chromium (Debian's `chromium`, through Playwright).

    make screenshots            # or: .venv/bin/python docs/screenshots.py [--out docs]

It starts a throwaway redis-server and `agentbus serve --transport http` on free loopback ports (both
stopped at the end), sets the scene through the core API (a release workflow of 12 tasks in mixed
states, agents with notes and progress, held locks, messages, a dead task, events), and
saves `dashboard.png` (the page) and `dashboard-workflow.png` (the workflow clicked open). It drives the
page only by what every version of it has (a workflow row to click, the tasks table to wait for), so it
runs again unchanged whatever the page shows besides.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.settings import Settings

DOCS = Path(__file__).resolve().parent
NAMESPACE = "acme-release"
VIEWPORT = {"width": 1400, "height": 1000}
START_SECONDS = 30.0
SETTLE_SECONDS = 1.5  # for the page's last refetch and any drawing to finish before a picture

TASKS: list[dict[str, Any]] = [
    {"key": "scope", "title": "Scope the 2.4 release", "capability": "plan"},
    {"key": "design", "title": "Design the export API", "capability": "plan", "depends_on": ["scope"]},
    {"key": "api", "title": "Implement /export", "capability": "code", "depends_on": ["design"]},
    {"key": "ui", "title": "Export button and dialog", "capability": "code", "depends_on": ["design"]},
    {"key": "cli", "title": "agentctl export", "capability": "code", "depends_on": ["design"]},
    {"key": "tests", "title": "Integration tests", "capability": "test", "depends_on": ["api", "cli"]},
    {"key": "a11y", "title": "Accessibility pass", "capability": "test", "depends_on": ["ui"]},
    {"key": "docs", "title": "User guide: exporting", "capability": "docs", "depends_on": ["api"]},
    {"key": "review", "title": "Code review", "capability": "review", "depends_on": ["tests", "a11y"]},
    {"key": "notes", "title": "Release notes", "capability": "docs", "depends_on": ["docs", "review"]},
    {"key": "build", "title": "Build and sign packages", "capability": "build", "depends_on": ["review"]},
    {"key": "ship", "title": "Publish 2.4", "capability": "build", "depends_on": ["build", "notes"]},
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_until(ok: Any, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while not ok():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"screenshots: {what} did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


async def scene(bus: AgentBus) -> str:
    """The release half done: the workflow's id."""
    created = await bus.workflows.create("lead", title="Release 2.4: data export", tasks=TASKS)
    ids = created.task_ids
    crew = {
        "planner": ["plan"], "coder-1": ["code"], "coder-2": ["code"], "tester": ["test"],
        "writer": ["docs"], "reviewer": ["review"], "builder": ["build"],
    }  # fmt: skip
    for agent, caps in crew.items():
        await bus.presence.heartbeat(agent, capabilities=caps, note="ready", ttl_seconds=3600)

    async def claim(agent: str, key: str) -> str:
        return await lease(bus, agent, ids[key])

    for agent, key in (("planner", "scope"), ("planner", "design"), ("coder-1", "api")):
        await bus.tasks.complete(agent, ids[key], await claim(agent, key), summary=f"{key} done")
    cli = await claim("coder-2", "cli")
    await bus.tasks.fail(
        "coder-2", ids["cli"], cli, error="flag parser rejects --since; retrying after rebase"
    )
    await claim("coder-2", "ui")
    await bus.presence.heartbeat(
        "coder-2", status="busy", note="wiring the export dialog", ttl_seconds=3600,
        progress={"task_id": ids["ui"], "percent": 60, "message": "dialog done, wiring the API"},
    )  # fmt: skip
    await claim("writer", "docs")
    await bus.presence.heartbeat(
        "writer", status="busy", note="drafting the export guide", ttl_seconds=3600,
        progress={"task_id": ids["docs"], "percent": 25, "message": "outline and first section"},
    )  # fmt: skip
    await bus.presence.heartbeat("tester", status="idle", note="waiting for api + cli", ttl_seconds=3600)
    await bus.presence.heartbeat("reviewer", status="idle", note="reviewing 2.3.1 hotfix", ttl_seconds=3600)
    await bus.presence.heartbeat("planner", status="idle", note="plan and design done", ttl_seconds=3600)

    lost = await bus.tasks.create(
        "lead", title="Upload nightly to mirror", capability="build", max_attempts=1
    )
    token = await lease(bus, "builder", lost.task_id)
    await bus.tasks.fail("builder", lost.task_id, token, error="mirror.example: connection reset by peer")
    await bus.presence.heartbeat(
        "builder", status="idle", note="mirror down, waiting for ops", ttl_seconds=3600
    )

    await bus.locks.acquire("coder-2", "repo:main/export", ttl_seconds=900)
    await bus.locks.acquire("writer", "docs:export-guide", ttl_seconds=1800)
    await bus.inbox.send("lead", "coder-2", "Keep the dialog keyboard-friendly; a11y is next.")
    await bus.inbox.send("coder-2", "lead", "Will do. The API returns 202 + a job id, fine for the UI.")
    await bus.inbox.send("lead", "role:docs", "Screenshots for the guide come from the staging build.")
    await bus.events.publish("lead", "release.freeze", {"version": "2.4", "in_days": 3})
    await bus.events.publish("builder", "mirror.down", {"host": "mirror.example"})
    return created.workflow_id


async def lease(bus: AgentBus, agent: str, task_id: str) -> str:
    """`agent` claims the task `task_id`: its lease token."""
    claimed = await bus.tasks.claim(agent, task_id=task_id, lease_seconds=3600)
    assert claimed.lease is not None, claimed.reason
    return claimed.lease.lease_token


async def photograph(base: str, workflow_id: str, out: Path, chromium: str) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = await browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
            await page.goto(base + "/")
            row = page.locator(f'#workflows tr[data-workflow="{workflow_id}"]')
            await row.wait_for(timeout=15_000)
            await asyncio.sleep(SETTLE_SECONDS)
            await page.screenshot(path=out / "dashboard.png")
            await row.click()
            await page.locator("#tasks tbody tr[data-task]").first.wait_for(timeout=15_000)
            await asyncio.sleep(SETTLE_SECONDS)
            await page.screenshot(path=out / "dashboard-workflow.png", full_page=True)
        finally:
            await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DOCS, help="where the PNGs go (default: docs/)")
    out = parser.parse_args().out
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    redis_server = shutil.which("redis-server")
    if chromium is None or redis_server is None:
        raise SystemExit(
            "screenshots: needs chromium and redis-server on PATH (apt-get install chromium redis)"
        )
    redis_port, http_port = free_port(), free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    with tempfile.TemporaryDirectory(prefix="agentbus-shots-") as tmp:
        work = Path(tmp)
        redis_argv = [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AGENTBUS_REDIS_URL": url,
            "AGENTBUS_NAMESPACE": NAMESPACE,
            "AGENTBUS_TOKENS_FILE": str(work / "no-tokens.json"),  # loopback, no login form
        }
        serve = [
            sys.executable,
            "-m",
            "mcp_agentbus",
            "serve",
            "--transport",
            "http",
            "--port",
            str(http_port),
        ]
        with process([*redis_argv, "--dir", tmp], env, work / "redis.log") as redis_proc:
            wait_until(lambda: _listening(redis_port), "redis-server", redis_proc, work / "redis.log")
            with process(serve, env, work / "serve.log") as server:
                base = f"http://127.0.0.1:{http_port}"
                wait_until(lambda: answers(base + "/healthz"), "agentbus serve", server, work / "serve.log")
                workflow_id = asyncio.run(_staged(url))
                asyncio.run(photograph(base, workflow_id, out, chromium))
    print(f"screenshots: wrote {out / 'dashboard.png'} and {out / 'dashboard-workflow.png'}")


async def _staged(url: str) -> str:
    async with AgentBus.open(Settings(redis_url=url, namespace=NAMESPACE)) as bus:
        return await scene(bus)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
