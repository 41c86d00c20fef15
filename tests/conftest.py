"""Fixtures: every bus test runs twice, on the embedded store (fakeredis) and on a real redis-server.

The real server is started once per session on a free loopback port. Without a redis-server binary
the real half is skipped locally, and fails under CI=true: CI must never pass on fakeredis alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from helpers import backend_url, free_port, fresh_settings

from mcp_agentbus.bus import AgentBus
from mcp_agentbus.settings import Settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def real_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """URL of a redis-server started for this session, or None when there is no binary (not in CI)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if IN_CI:
            pytest.fail(
                "redis-server is not installed; CI must test against a real Redis (.ci/run installs it)"
            )
        yield None
        return
    workdir: Path = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail("redis-server did not start")
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    """MCP era: `auto` negotiates 2026-07-28 against this server; `legacy` forces the initialize handshake."""
    return str(request.param)


@pytest.fixture(params=["memory", "redis"])
def redis_url(request: pytest.FixtureRequest, real_redis_url: str | None) -> str:
    """Each test that uses this runs on fakeredis and on the real server."""
    return backend_url(str(request.param), real_redis_url)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return fresh_settings(redis_url)


@pytest.fixture
async def bus(settings: Settings) -> AsyncIterator[AgentBus]:
    async with AgentBus.open(settings) as bus:
        yield bus
