"""Fixtures: every bus test runs twice, on the embedded store (fakeredis) and on a real redis-server;
modules marked `helpers.ALSO_ON_CLUSTER` run a third time on a 3-master Redis Cluster.

Real servers (the single one, the cluster, a sentinel with its master) are started once per session,
on free loopback ports, the first time a test asks for them. Under xdist (`make test`) each worker is
a session of its own, so each worker has its own servers and no two workers share a Redis. Without
the binaries the real legs are skipped locally, and fail under CI=true: CI must never pass on
fakeredis alone.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis
from helpers import backend_url, free_port, free_ports, fresh_settings
from helpers.redis_servers import DATA_ARGS, redis_binary, start_cluster, start_redis, stop_redis

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.redis.local import LocalBus
from mcp_agentbus.settings import Settings


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True, scope="session")
def _no_users_tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Servers the tests start must not pick up the user's own tokens (which would turn auth on)."""
    path = tmp_path_factory.mktemp("tokens") / "none.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGENTBUS_TOKENS_FILE", str(path))
        yield


@pytest.fixture(autouse=True, scope="session")
def _no_users_local_bus() -> Iterator[None]:
    """Nothing the tests start may join or start the user's own local bus: the state directory is a
    short temporary one (a unix socket path must stay under ~100 bytes), and any bus there is stopped."""
    state = Path(tempfile.mkdtemp(prefix="ab-state-", dir="/tmp"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(state))
        yield
    LocalBus(state / "agentbus").stop()
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """`own_redis(*args)` starts a redis-server of this test's own, configured by `args`, and gives its
    URL; every one started is stopped after the test."""
    binary = redis_binary("redis-server")
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> str:
        if binary is None:
            pytest.skip("redis-server not installed")
        port = free_port()
        workdir = tmp_path / f"redis-{port}"
        workdir.mkdir()
        procs.append(start_redis(binary, port, workdir, *args))
        return f"redis://127.0.0.1:{port}/0"

    yield start
    stop_redis(procs)


@pytest.fixture(scope="session")
def real_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """URL of a redis-server started for this session, or None when there is no binary (not in CI)."""
    binary = redis_binary("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    proc = start_redis(binary, port, tmp_path_factory.mktemp("redis"), *DATA_ARGS)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_redis([proc])


@pytest.fixture(scope="session")
def cluster_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """A ``redis+cluster://`` URL of a 3-master Redis Cluster (no replicas) started for this session,
    or None when there are no binaries (not in CI)."""
    server, cli = redis_binary("redis-server"), redis_binary("redis-cli")
    if server is None or cli is None:
        yield None
        return
    procs, ports = start_cluster(server, cli, tmp_path_factory.mktemp("cluster"))
    try:
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)
    finally:
        stop_redis(procs)


@pytest.fixture(scope="session")
def sentinel_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """A ``redis+sentinel://…/mymaster`` URL: one master redis-server watched by one sentinel, started
    for this session; None when there is no binary (not in CI)."""
    binary = redis_binary("redis-server")
    if binary is None:
        yield None
        return
    master_port, sentinel_port = free_ports(2)
    procs = [start_redis(binary, master_port, tmp_path_factory.mktemp("sentinel-master"), *DATA_ARGS)]
    try:
        workdir = tmp_path_factory.mktemp("sentinel")
        conf = workdir / "sentinel.conf"  # the sentinel rewrites it, so it lives in a scratch dir
        conf.write_text(
            f"port {sentinel_port}\n"
            "bind 127.0.0.1\n"
            f"dir {workdir}\n"
            f"sentinel monitor mymaster 127.0.0.1 {master_port} 1\n"
            "sentinel down-after-milliseconds mymaster 2000\n"
            "sentinel failover-timeout mymaster 10000\n"
        )
        procs.append(start_redis(binary, sentinel_port, workdir, str(conf), "--sentinel"))
        wait_for_sentinel(sentinel_port, master_port)
        yield f"redis+sentinel://127.0.0.1:{sentinel_port}/mymaster"
    finally:
        stop_redis(procs)


def wait_for_sentinel(sentinel_port: int, master_port: int) -> None:
    """Poll (bounded) until the sentinel names the master and sees it up."""
    client = redis.Redis(host="127.0.0.1", port=sentinel_port, decode_responses=True)
    try:
        deadline = time.monotonic() + 30
        state: object = None
        while time.monotonic() < deadline:
            state = client.sentinel_master("mymaster")
            if (
                isinstance(state, dict)
                and state.get("port") == master_port
                and state.get("is_master")
                and not state.get("is_sdown")
                and not state.get("is_odown")
            ):
                return
            time.sleep(0.1)
        pytest.fail(f"the sentinel on port {sentinel_port} did not see its master up: {state}")
    finally:
        client.close()


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    """MCP era: `auto` negotiates 2026-07-28 against this server; `legacy` forces the initialize handshake."""
    return str(request.param)


@pytest.fixture(params=["memory", "redis"])
def redis_url(request: pytest.FixtureRequest, real_redis_url: str | None) -> str:
    """Each test that uses this runs on fakeredis and on the real server; modules marked
    `helpers.ALSO_ON_CLUSTER` also on the session's Redis Cluster (started only if one asks)."""
    backend = str(request.param)
    if backend == "cluster":
        cluster: str | None = request.getfixturevalue("cluster_redis_url")
        if cluster is None:
            pytest.skip("redis-server or redis-cli not installed")
        return cluster
    return backend_url(backend, real_redis_url)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return fresh_settings(redis_url)


@pytest.fixture
async def bus(settings: Settings) -> AsyncIterator[AgentBus]:
    async with AgentBus.open(settings) as bus:
        yield bus


# A real Redis for the tests that need one (HTTP servers, tokens), skipped without redis-server.
@pytest.fixture(scope="module")
def redis_url_real(real_redis_url: str | None) -> str:
    if real_redis_url is None:
        pytest.skip("redis-server not installed")
    return real_redis_url
