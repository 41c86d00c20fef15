"""A real headless Chromium for the dashboard's tests: Debian's (`/usr/bin/chromium`; `.ci/run` installs
it) driven by Playwright, never a downloaded one. Missing, a test that asks for it skips locally and fails
under CI=true, like the other real components. A test module imports the fixtures (`chromium`,
`browser`) by their function names."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

from helpers.redis_servers import IN_CI

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(name="chromium")
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if IN_CI:
            pytest.fail("chromium is not installed; CI must test the dashboard in it (.ci/run installs it)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return path


@pytest.fixture(name="browser")
async def launched_browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()
