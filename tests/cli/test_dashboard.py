"""`agentbus status` and `agentbus watch`: the namespace at a glance, read without changing anything."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest
from rich.console import Console

from mcp_agentbus.cli.views import Snapshot, render, take
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio
MODULE = [sys.executable, "-m", "mcp_agentbus"]
TIMEOUT = 30


async def populate(bus: AgentBus) -> str:
    """Two agents, a workflow mid-way, a held lock, a dead task, and a delayed one."""
    await bus.presence.heartbeat("coder", status="busy", capabilities=["code"])
    await bus.presence.heartbeat("helper")
    created = await bus.workflows.create(
        "planner",
        title="ship it",
        tasks=[
            {"key": "write", "title": "Write", "capability": "code"},
            {"key": "docs", "title": "Docs"},
            {"key": "release", "title": "Release", "depends_on": ["write", "docs"]},
        ],
    )
    claim = await bus.tasks.claim("coder")
    assert claim.task is not None and claim.task.key == "write"
    await bus.locks.acquire("coder", "file:src/app.py", ttl_seconds=60)
    doomed = await bus.tasks.create("planner", title="doomed", max_attempts=1, capability="ops")
    lease = await bus.tasks.claim("helper", task_id=doomed.task_id)
    assert lease.lease is not None
    await bus.tasks.fail("helper", doomed.task_id, lease.lease.lease_token, error="disk full")
    await bus.tasks.create("planner", title="later", delay_seconds=600)
    return created.workflow_id


def rendered(snap: Snapshot) -> str:
    console = Console(record=True, width=140)
    console.print(render(snap))
    return console.export_text()


async def test_a_snapshot_shows_agents_workflows_queues_locks_and_dead_tasks(bus: AgentBus) -> None:
    workflow_id = await populate(bus)
    snap = await take(bus, workflow_id=workflow_id)

    assert {a.agent: a.tasks for a in snap.agents}["coder"] == [snap.workflow.tasks[0].id]  # type: ignore[union-attr]
    assert [w.title for w in snap.workflows] == ["ship it"]
    assert snap.workflows[0].progress.claimed == 1 and snap.workflows[0].progress.ready == 1
    assert snap.ready == {"any": 1}  # docs; write is claimed, release blocked, the dead one gone
    assert (snap.delayed, snap.claimed, snap.dead_total) == (1, 1, 1)
    assert [(d.title, d.attempts, d.error) for d in snap.dead] == [("doomed", 1, "disk full")]
    assert [(lock.resource, lock.holder) for lock in snap.locks] == [("file:src/app.py", "coder")]
    assert snap.workflow is not None
    assert [(t.key, t.state) for t in snap.workflow.tasks] == [
        ("write", "claimed"),
        ("docs", "ready"),
        ("release", "blocked"),
    ]
    assert snap.events[-1].topic == "task.created"

    text = rendered(snap)
    for shown in ("coder", "ship it", "file:src/app.py", "disk full", "Dead tasks (1)", "release", "1/3"):
        assert shown in text, shown
    assert "ready: any 1 · delayed 1 · claimed 1 · dead 1" in text


async def test_an_empty_namespace_says_so(bus: AgentBus) -> None:
    text = rendered(await take(bus))
    assert "no agents" in text and "no workflows" in text and "dead 0" in text


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}
    return subprocess.run(
        [*MODULE, *args], env={**base, **env}, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


@pytest.fixture
def redis_url(real_redis_url: str | None) -> str:
    """The CLI looks from another process, so these tests need the real server."""
    if real_redis_url is None:
        pytest.skip("redis-server not installed")
    return real_redis_url


async def test_status_prints_the_namespace_and_its_json(bus: AgentBus, settings: Settings) -> None:
    workflow_id = await populate(bus)
    env = {"AGENTBUS_REDIS_URL": settings.redis_url, "AGENTBUS_NAMESPACE": settings.namespace}

    shown = run("status", "--workflow", workflow_id, **env)
    assert shown.returncode == 0, shown.stderr
    for fragment in ("coder", "ship it", "file:src/app.py", "disk full", "Tasks of " + workflow_id):
        assert fragment in shown.stdout, fragment

    data = json.loads(run("status", "--json", **env).stdout)
    assert data["namespace"] == settings.namespace
    assert (data["delayed"], data["claimed"], data["dead_total"]) == (1, 1, 1)
    assert {a["agent"] for a in data["agents"]} == {"coder", "helper"}


def test_status_refuses_what_it_cannot_look_into() -> None:
    memory = run("status", "--redis-url", "memory://")
    assert memory.returncode == 2 and "other processes cannot look into it" in memory.stderr
    local = run("status")  # the tests' state directory has no local bus running
    assert local.returncode == 2 and "the local bus is not running" in local.stderr
    assert "agentbus local start" in local.stderr and "Traceback" not in local.stderr


async def test_watch_shows_changes_live_until_interrupted(bus: AgentBus, settings: Settings) -> None:
    """On a terminal (a pty here), `watch` redraws as the bus changes; Ctrl-C ends it cleanly."""
    await bus.presence.heartbeat("first-agent")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")},
        "AGENTBUS_REDIS_URL": settings.redis_url,
        "AGENTBUS_NAMESPACE": settings.namespace,
        "COLUMNS": "120",
    }
    leader, follower = pty.openpty()
    # Blocking reads are fine here: nothing else runs on this test's event loop meanwhile.
    proc = subprocess.Popen(  # noqa: ASYNC220
        [*MODULE, "watch", "--interval", "0.2"], env=env, stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    screen = ""

    def read_until(text: str) -> None:
        nonlocal screen
        deadline = time.monotonic() + TIMEOUT
        while text not in screen:
            assert time.monotonic() < deadline, screen
            if select.select([leader], [], [], 0.5)[0]:
                screen += os.read(leader, 65536).decode(errors="replace")

    try:
        read_until("first-agent")
        await bus.presence.heartbeat("second-agent")
        read_until("second-agent")
        proc.send_signal(signal.SIGINT)
        # Keep reading: a view that cannot write its last frames to a full terminal never exits.
        deadline = time.monotonic() + TIMEOUT
        while proc.poll() is None:
            assert time.monotonic() < deadline, "watch did not end on Ctrl-C"
            if select.select([leader], [], [], 0.1)[0]:
                try:
                    screen += os.read(leader, 65536).decode(errors="replace")
                except OSError:  # the terminal closed as the process ended
                    break
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    assert "Traceback" not in screen


# Ctrl-C while `watch` imports its views, raised where Python drops a KeyboardInterrupt: in a weakref
# callback (importlib runs one as each import ends), which prints "Exception ignored" and goes on.
LOST_CTRL_C = """
import os, signal, sys, weakref
from mcp_agentbus.cli.main import main

class Token:
    pass

def ctrl_c(ref):
    os.kill(os.getpid(), signal.SIGINT)

def on_import(event, args):
    if event == "import" and args[0] == "mcp_agentbus.cli.views" and not sent:
        sent.append(True)
        token = Token()
        ref = weakref.ref(token, ctrl_c)
        del token

sent = []
sys.addaudithook(on_import)
main(["watch", "--interval", "0.1"])
"""


def test_watch_ends_on_a_ctrl_c_python_would_drop_while_it_starts(settings: Settings) -> None:
    """Until its own handler is in place, `watch` only notes a Ctrl-C. Raised as KeyboardInterrupt, one
    that landed in a weakref callback during its imports was dropped ("Exception ignored") and the view
    ran on for good; this Ctrl-C comes in just such a callback."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")},
        "AGENTBUS_REDIS_URL": settings.redis_url,
        "AGENTBUS_NAMESPACE": settings.namespace,
    }
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", LOST_CTRL_C], env=env, stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    screen = ""
    try:
        deadline = time.monotonic() + TIMEOUT
        while proc.poll() is None:
            assert time.monotonic() < deadline, f"watch ran on after a Ctrl-C:\n{screen}"
            if select.select([leader], [], [], 0.1)[0]:
                try:
                    screen += os.read(leader, 65536).decode(errors="replace")
                except OSError:  # the terminal closed as the process ended
                    break
        assert proc.wait(timeout=TIMEOUT) == 0, screen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    assert "Traceback" not in screen and "Exception ignored" not in screen
