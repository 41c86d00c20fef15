"""`agentbus doctor` against real redis-servers configured well and badly: each check reports what it
saw, says what to do when it is not fine, and the exit status tells a script whether anything failed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
import redis

from mcp_agentbus.cli.doctor import Check, _version, diagnose
from mcp_agentbus.redis.local import LocalBus
from mcp_agentbus.settings import Settings

DOCTOR = [sys.executable, "-m", "mcp_agentbus", "doctor"]
TIMEOUT = 60  # an unreachable Redis is retried briefly first; every run ends far sooner


def doctor(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DOCTOR, "--redis-url", url], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def test_a_well_configured_redis_passes_every_check(own_redis: Callable[..., str]) -> None:
    url = own_redis("--appendonly", "yes", "--maxmemory-policy", "noeviction")
    proc = doctor(url)
    assert proc.returncode == 0, proc
    lines = proc.stdout.splitlines()
    names = ["reachable", "version", "maxmemory-policy", "persistence", "scripts", "latency"]
    assert [line.split(":")[0].split()[-1] for line in lines] == names, proc.stdout
    assert all(line.startswith("ok") for line in lines), proc.stdout
    assert "AOF on" in proc.stdout and "noeviction" in proc.stdout


@pytest.mark.anyio
async def test_an_evicting_snapshot_only_redis_gets_warnings_with_fixes(
    own_redis: Callable[..., str],
) -> None:
    url = own_redis("--appendonly", "no", "--save", "3600 1", "--maxmemory-policy", "allkeys-lru")
    checks = by_name(await diagnose(Settings(redis_url=url)))
    policy, persistence = checks["maxmemory-policy"], checks["persistence"]
    assert policy.status == "warn" and "allkeys-lru" in policy.detail and "noeviction" in policy.fix
    assert persistence.status == "warn" and "snapshots only" in persistence.detail
    assert "appendonly yes" in persistence.fix
    assert {c.status for n, c in checks.items() if n not in ("maxmemory-policy", "persistence")} == {"ok"}


@pytest.mark.anyio
async def test_no_persistence_at_all_is_named(own_redis: Callable[..., str]) -> None:
    url = own_redis("--appendonly", "no", "--save", "")
    persistence = by_name(await diagnose(Settings(redis_url=url)))["persistence"]
    assert persistence.status == "warn" and "restart loses every task" in persistence.detail


def test_a_user_who_may_not_run_scripts_fails_the_script_check(own_redis: Callable[..., str]) -> None:
    url = own_redis("--maxmemory-policy", "noeviction")
    admin = redis.Redis.from_url(url)
    try:
        admin.acl_setuser(
            "limited", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all", "-@scripting"]
        )
    finally:
        admin.close()
    proc = doctor(url.replace("redis://", "redis://limited:s3cret@"))
    assert proc.returncode == 1, proc
    scripts = next(line for line in proc.stdout.splitlines() if "scripts:" in line)
    assert scripts.startswith("FAIL"), proc.stdout
    assert "+@scripting" in proc.stdout  # what to do
    assert "s3cret" not in proc.stdout + proc.stderr


def test_an_unreachable_redis_fails_with_what_to_do(own_redis: Callable[..., str]) -> None:
    url = own_redis()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    redis.Redis(port=port).shutdown(nosave=True)
    proc = doctor(url)
    assert proc.returncode == 1, proc
    assert proc.stdout.startswith(f"FAIL  reachable: {url}"), proc.stdout
    assert "Start redis-server" in proc.stdout
    assert len(proc.stdout.splitlines()) == 2  # nothing else is checked against nothing


def test_memory_is_named_as_a_single_process_bus() -> None:
    checks = anyio.run(diagnose, Settings(redis_url="memory://"))
    assert [(c.name, c.status) for c in checks] == [("backend", "warn")]
    assert "AGENTBUS_REDIS_URL" in checks[0].fix


@pytest.mark.parametrize(
    ("version", "status"), [("6.0.16", "fail"), ("6.2.14", "ok"), ("7.0.15", "ok"), ("7.4.1", "ok")]
)
def test_redis_older_than_6_2_fails(version: str, status: str) -> None:
    check = _version({"redis_version": version})
    assert check.status == status and version in check.detail


def test_doctor_reports_a_stopped_local_bus_as_not_running_and_does_not_start_it(tmp_path: Path) -> None:
    directory = tmp_path / "bus"
    proc = doctor(f"local://{directory}")
    assert proc.returncode == 0, proc  # not running is the normal state before the first serve
    assert proc.stdout.startswith(f"WARN  local bus: not running ({directory})"), proc.stdout
    assert "agentbus local start" in proc.stdout  # what to do to have it checked
    assert len(proc.stdout.splitlines()) == 2, proc.stdout  # nothing else is checked against nothing
    assert not (directory / "redis.sock").exists()


def test_doctor_checks_a_running_local_bus_it_did_not_start(tmp_path: Path) -> None:
    bus = LocalBus(tmp_path / "bus")
    bus.ensure()
    try:
        proc = doctor(f"local://{bus.directory}")
    finally:
        bus.stop()
    assert proc.returncode == 0, proc
    assert proc.stdout.startswith(f"ok    local bus: running: {bus.directory}"), proc.stdout
    assert "ok    persistence: AOF on" in proc.stdout and "ok    maxmemory-policy: noeviction" in proc.stdout
