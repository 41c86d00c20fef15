"""Real headless Chromium for the dashboard tests, and `agentbus dashboard` as a real process.

Chromium is Debian's (`/usr/bin/chromium`; `.ci/run` installs it), driven by Playwright with that
executable (never `playwright install`): missing, the browser tests skip locally and fail under CI=true,
like the other real components.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx2
import pytest
from playwright.async_api import Browser, async_playwright

from helpers import free_port
from helpers.examples import stop
from helpers.redis_servers import IN_CI

START_BOUND = 60.0  # seconds `agentbus dashboard` may take to answer on a busy machine
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def chromium_path() -> str:
    """Debian's chromium; skips the test without it (fails it under CI=true)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if IN_CI:
            pytest.fail("chromium is not installed; CI must test the dashboard in it (.ci/run installs it)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return path


@asynccontextmanager
async def launched(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@contextmanager
def agentbus_dashboard(env: dict[str, str], log: Path, *flags: str) -> Iterator[str]:
    """`agentbus dashboard` on a free loopback port until exit, answering: its base URL. Its log must
    hold no traceback."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mcp_agentbus", "dashboard", "--port", str(port), *flags],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_BOUND
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx2.get(base + "/", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, f"agentbus dashboard did not answer:\n{log.read_text()}"
            time.sleep(0.05)
        yield base
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        stop(proc)


@pytest.fixture(name="chromium")
def chromium_fixture() -> str:
    return chromium_path()


@pytest.fixture(name="browser")
async def browser_fixture(chromium: str) -> AsyncIterator[Browser]:
    """One browser for the test; a test module imports this fixture (and `chromium`) by name."""
    async with launched(chromium) as browser:
        yield browser
