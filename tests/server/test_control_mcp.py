"""Task control through MCP: cancel_task, retry_task, `assignee` and heartbeat `progress`, driven by the
real `mcp.Client` in both protocol eras — in memory on both backends, over streamable HTTP to a server
process, and over stdio to a server process — with one scenario a coordinator and two workers play."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from helpers.http_servers import Server, bus_env, http_server
from helpers.http_servers import connect as connect_http
from helpers.mcp_session import Bus, connect, text_of
from helpers.stdio import assert_clean_log
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio

TIMEOUT = 30  # bound on one scenario; a server process starts in about a second
SERVE = [sys.executable, "-m", "mcp_agentbus", "serve"]


async def scenario(bus: Bus) -> None:
    """A coordinator assigns, watches progress, cancels, retries and cancels a workflow; its workers
    see exactly what the contract says."""
    run = uuid.uuid4().hex[:6]  # a shared server: agents of this run only
    boss, alice, bob = f"boss-{run}", f"alice-{run}", f"bob-{run}"
    for worker in (alice, bob):
        await bus.ok("heartbeat", {"agent": worker})
    created = await bus.ok(
        "create_workflow",
        {
            "agent": boss,
            "title": "control",
            "tasks": [
                {"key": "a", "title": "A", "assignee": bob},
                {"key": "b", "title": "B", "depends_on": ["a"]},
                {"key": "c", "title": "C"},
            ],
        },
    )
    ids, wf = created["task_ids"], created["workflow_id"]
    extra = await bus.ok("create_task", {"agent": boss, "title": "extra", "assignee": bob})
    listed = await bus.ok("list_agents")
    assert next(a for a in listed["agents"] if a["agent"] == bob)["assigned"] == 2

    # an assigned task never reaches another agent
    await bus.err("claim_task", {"agent": alice, "task_id": ids["a"]}, "wrong_state", f"assigned to {bob}")
    got_c = await bus.ok("claim_task", {"agent": alice})
    assert got_c["task"]["id"] == ids["c"]
    got_a = await bus.ok("claim_task", {"agent": bob})
    assert got_a["task"]["id"] == ids["a"]

    # progress
    beat = await bus.call(
        "heartbeat", {"agent": bob, "progress": {"task_id": ids["a"], "percent": 50, "message": "half"}}
    )
    assert f"progress of {ids['a']} recorded (50%)" in text_of(beat)
    assert "1 task(s) assigned to you are ready" in text_of(beat)
    view = await bus.ok("get_workflow", {"workflow_id": wf})
    task_a = next(t for t in view["workflow"]["tasks"] if t["id"] == ids["a"])
    assert task_a["assignee"] == bob and task_a["progress"]["percent"] == 50
    await bus.err(
        "heartbeat", {"agent": alice, "progress": {"task_id": ids["a"], "percent": 1}}, "wrong_state", bob
    )

    # cancel a claimed task: the holder is told, its late complete is lease_lost with the reason
    dead = await bus.ok(
        "fail_task",
        {"agent": alice, "task_id": ids["c"], "lease_token": got_c["lease"]["lease_token"], "error": "x",
         "retry": False},
    )  # fmt: skip
    assert dead["state"] == "dead"
    cancel = await bus.call("cancel_task", {"agent": boss, "task_id": ids["a"], "reason": "plan changed"})
    assert text_of(cancel).startswith(f"Cancelled 2 task(s): {ids['a']}, {ids['b']}")
    told = await bus.ok("heartbeat", {"agent": bob})
    assert any("cancelled (plan changed)" in notice for notice in told["notices"]), told["notices"]
    await bus.err(
        "complete_task",
        {"agent": bob, "task_id": ids["a"], "lease_token": got_a["lease"]["lease_token"], "result": 1},
        "lease_lost",
        "plan changed",
    )
    again = await bus.ok("cancel_task", {"agent": boss, "task_id": ids["a"], "reason": "plan changed"})
    assert (again["cancelled"], again["already_final"]) == ([], [ids["a"]])

    # retry the dead task and the cancelled one: the dependent comes back
    assert (await bus.ok("retry_task", {"agent": boss, "task_id": ids["c"], "reason": "fixed"}))[
        "state"
    ] == "ready"
    retried = await bus.ok("retry_task", {"agent": boss, "task_id": ids["a"], "reason": "back on"})
    assert (retried["state"], retried["restored"]) == ("ready", [ids["b"]])
    await bus.err("retry_task", {"agent": boss, "task_id": ids["a"], "reason": "r"}, "wrong_state", "ready")
    running = await bus.ok("get_workflow", {"workflow_id": wf})
    assert running["workflow"]["status"] == "running"

    # cancel the whole workflow
    whole = await bus.ok("cancel_task", {"agent": boss, "workflow_id": wf, "reason": "scrapped"})
    assert sorted(whole["cancelled"]) == sorted(ids.values()) and whole["already_final"] == []
    final = await bus.ok("get_workflow", {"workflow_id": wf})
    assert final["workflow"]["status"] == "cancelled"
    await bus.ok("cancel_task", {"agent": boss, "task_id": extra["task_id"], "reason": "tidy up"})


async def test_task_control_in_memory(settings: Settings, mode: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            await scenario(bus)


@pytest.fixture(scope="module")
def http(redis_url_real: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("control-http") / "server.log"
    with http_server(bus_env(redis_url_real, f"control-{uuid.uuid4().hex[:8]}"), log) as server:
        yield server
    server.assert_clean_log()


async def test_task_control_over_http(http: Server, mode: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect_http(http, mode) as bus:
            await scenario(bus)


@asynccontextmanager
async def stdio(redis_url: str, log: Path, mode: str) -> AsyncIterator[Bus]:
    env = bus_env(redis_url, f"control-{uuid.uuid4().hex[:8]}")
    params = StdioServerParameters(command=SERVE[0], args=SERVE[1:], env=env, cwd=str(log.parent))
    with log.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:
            listed = await client.list_tools()
            yield Bus(client, {t.name: t.output_schema for t in listed.tools if t.output_schema is not None})


async def test_task_control_over_stdio(redis_url_real: str, tmp_path: Path, mode: str) -> None:
    log = tmp_path / "server.log"
    with anyio.fail_after(TIMEOUT):
        async with stdio(redis_url_real, log, mode) as bus:
            await scenario(bus)
    assert_clean_log(log)
