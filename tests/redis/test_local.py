"""The zero-config local bus: with no Redis configured, every agentbus process of the user shares one
managed redis-server on a unix socket (AOF on), started by whichever comes first.

Each test gets a state directory of its own (short, under /tmp: unix socket paths are limited) and
stops the server it started.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest
from helpers.redis_servers import redis_binary
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.redis import local
from mcp_agentbus.redis.local import LocalBus, LocalBusError
from mcp_agentbus.settings import Settings

MODULE = [sys.executable, "-m", "mcp_agentbus"]
TIMEOUT = 30


@pytest.fixture
def state() -> Iterator[Path]:
    """An XDG state home of its own; the local bus in it is stopped afterwards."""
    if redis_binary("redis-server") is None:
        pytest.skip("redis-server not installed")
    home = Path(tempfile.mkdtemp(prefix="ab-", dir="/tmp"))
    yield home
    LocalBus(home / "agentbus").stop()
    shutil.rmtree(home, ignore_errors=True)


def run(args: list[str], state: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """An agentbus command with no AGENTBUS_* configuration but `env`, on the state home `state`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}
    return subprocess.run(
        [*MODULE, *args],
        env={**base, "XDG_STATE_HOME": str(state), **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_the_first_process_starts_it_and_the_next_joins_the_same_server(state: Path) -> None:
    bus = LocalBus(state / "agentbus")
    url, started = bus.ensure()
    assert started and url == f"unix://{state}/agentbus/redis.sock"
    again, started_again = LocalBus.from_url(f"local://{state}/agentbus").ensure()
    assert (again, started_again) == (url, False)

    info = bus.info()
    assert info is not None
    assert str(info["aof_enabled"]) == "1"  # acknowledged work survives a restart
    assert info["tcp_port"] == 0  # reachable through the socket only
    assert (state / "agentbus" / "redis.pid").read_text().strip() == str(info["process_id"])
    assert stat.S_IMODE((state / "agentbus").stat().st_mode) == 0o700
    assert stat.S_IMODE(bus.socket.stat().st_mode) == 0o700  # only this user can connect


def test_processes_starting_at_the_same_moment_share_one_server(state: Path) -> None:
    """Eight `agentbus local start` at once: one starts the server, seven join it; one bus."""
    with ThreadPoolExecutor(8) as pool:
        runs = list(pool.map(lambda _: run(["local", "start"], state), range(8)))
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    outputs = sorted(r.stdout.strip() for r in runs)
    url = f"unix://{state}/agentbus/redis.sock"
    assert outputs == [f"already running: {url}"] * 7 + [f"started: {url}"]
    servers = subprocess.run(["pgrep", "-f", f"{state}/agentbus/redis.sock"], capture_output=True, text=True)
    assert len(servers.stdout.split()) == 1, servers.stdout


@pytest.mark.anyio
async def test_two_unconfigured_servers_are_one_bus(state: Path, tmp_path: Path) -> None:
    """Two `agentbus serve` on stdio with no Redis configured, as two Claude Code sessions would start
    them: a task created through one is claimed through the other."""
    env = {"PATH": os.environ["PATH"], "XDG_STATE_HOME": str(state), "AGENTBUS_NAMESPACE": "proj"}
    params = StdioServerParameters(command=MODULE[0], args=[*MODULE[1:], "serve"], env=env)
    with (
        anyio.fail_after(TIMEOUT),
        (tmp_path / "a.log").open("w") as log_a,
        (tmp_path / "b.log").open("w") as log_b,
    ):
        async with (
            Client(stdio_client(params, errlog=log_a), mode="legacy") as a,
            Client(stdio_client(params, errlog=log_b), mode="legacy") as b,
        ):
            created = await a.call_tool("create_task", {"agent": "planner", "title": "shared"})
            assert created.structured_content is not None, created
            claimed = await b.call_tool("claim_task", {"agent": "worker"})
            assert claimed.structured_content is not None, claimed
            task = claimed.structured_content["task"]
            assert task is not None and task["id"] == created.structured_content["task_id"]
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert logs.count("started the local bus") == 1, logs  # one of them started it; the other joined
    assert "Traceback" not in logs


@pytest.mark.anyio
async def test_acknowledged_work_survives_stopping_the_local_bus(state: Path) -> None:
    settings = Settings(redis_url=f"local://{state}/agentbus", namespace="persist")
    async with AgentBus.open(settings) as bus:
        created = await bus.tasks.create("planner", title="outlive a restart")
    assert run(["local", "stop"], state).stdout.startswith("stopped the local bus")
    assert LocalBus(state / "agentbus").info() is None

    async with AgentBus.open(settings) as bus:  # connect() starts it again, from the AOF
        claim = await bus.tasks.claim("worker")
    assert claim.task is not None and claim.task.id == created.task_id


def test_status_start_and_stop_say_what_they_did(state: Path) -> None:
    before = run(["local", "status"], state)
    assert before.returncode == 1 and before.stdout.startswith("not running")
    assert run(["local", "start"], state).stdout.startswith("started: unix://")

    status = run(["local", "status"], state)
    assert status.returncode == 0, status.stderr
    assert f"running: unix://{state}/agentbus/redis.sock" in status.stdout
    assert "persistence: AOF" in status.stdout and "redis 7." in status.stdout

    assert run(["local", "stop"], state).stdout.startswith("stopped the local bus")
    assert run(["local", "stop"], state).stdout.startswith("not running")


def test_doctor_checks_the_local_bus_it_would_use_and_never_starts_it(state: Path) -> None:
    stopped = run(["doctor"], state)
    assert stopped.returncode == 0, stopped.stdout
    assert stopped.stdout.splitlines()[0].startswith("WARN  local bus: not running")
    assert not list(state.glob("**/*.sock")), "doctor started the local bus"
    run(["local", "start"], state)
    doctor = run(["doctor"], state)
    assert doctor.returncode == 0, doctor.stdout
    lines = doctor.stdout.splitlines()
    assert lines[0].startswith("ok    local bus: running")
    assert any(line.startswith("ok    persistence: AOF on") for line in lines)


def test_without_a_redis_server_it_says_the_ways_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTBUS_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(local, "WELL_KNOWN_DIRS", ())
    with pytest.raises(LocalBusError) as refused:
        LocalBus(Path(tempfile.mkdtemp(prefix="ab-", dir="/tmp"))).ensure()
    message = str(refused.value)
    assert "no redis-server was found" in message
    for way in ("apt install redis-server", "brew install redis", "AGENTBUS_REDIS_URL", "memory://"):
        assert way in message


def test_serve_refuses_cleanly_when_the_local_bus_cannot_start(state: Path) -> None:
    served = run(["serve"], state, AGENTBUS_REDIS_SERVER=str(state / "no-such-redis-server"))
    assert served.returncode == 2 and served.stdout == ""
    assert "could not run" in served.stderr and "AGENTBUS_REDIS_URL" in served.stderr
    assert "memory://" in served.stderr and "Traceback" not in served.stderr


def test_a_socket_path_too_long_is_refused_with_what_to_do(state: Path) -> None:
    with pytest.raises(LocalBusError, match="too long for a unix socket"):
        LocalBus(state / ("x" * 120)).ensure()


def test_memory_is_announced_as_a_bus_of_one_process(state: Path) -> None:
    served = run(["serve", "--redis-url", "memory://"], state)  # stdin closed: it ends at once
    assert "other agentbus processes will not see it" in served.stderr
    assert served.stdout == ""
