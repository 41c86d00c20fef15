"""get_workflow's `detail` (SPEC "Task control"): "full" (the default) with results and errors, "summary"
with states, assignees and progress only, for coordinators that poll; without an id, recent workflows
either way. Through a real MCP client session, on both backends and eras."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from helpers.mcp_session import Bus, connect, text_of

from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio

TIMEOUT = 20  # bound on one test's MCP traffic; each finishes far sooner
BRIEF_FIELDS = {"id", "key", "state", "assignee", "attempts", "progress"}


async def fifty_tasks_half_done(bus: Bus) -> dict[str, Any]:
    """A 50-task workflow whose first 25 tasks are done with a result of about 1 KB each."""
    tasks = [{"key": f"step-{i:02}", "title": f"Step {i} of the migration"} for i in range(50)]
    created = await bus.ok("create_workflow", {"agent": "lead", "title": "migrate", "tasks": tasks})
    for i in range(25):
        claim = await bus.ok(
            "claim_task", {"agent": f"w{i % 3}", "task_id": created["task_ids"][f"step-{i:02}"]}
        )
        await bus.ok(
            "complete_task",
            {
                "agent": f"w{i % 3}",
                "task_id": claim["task"]["id"],
                "lease_token": claim["lease"]["lease_token"],
                "result": {"files": [f"src/module_{i}/file_{j}.py" for j in range(30)]},
                "summary": "migrated",
            },
        )
    return created


async def test_a_summary_gives_states_assignees_and_progress_and_no_results(
    settings: Settings, mode: str
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            created = await fifty_tasks_half_done(bus)
            wf = created["workflow_id"]
            full = await bus.ok("get_workflow", {"workflow_id": wf})
            call = await bus.call("get_workflow", {"workflow_id": wf, "detail": "summary"})
            summary = await bus.ok("get_workflow", {"workflow_id": wf, "detail": "summary"})
    assert call.structured_content == summary
    assert all(t["result"]["files"] for t in full["workflow"]["tasks"][:25])  # the default is "full"
    got = summary["workflow"]
    assert got["progress"] == full["workflow"]["progress"]
    assert (got["progress"]["done"], got["progress"]["ready"], got["progress"]["total"]) == (25, 25, 50)
    assert got["status"] == "running"
    assert [set(t) for t in got["tasks"]] == [BRIEF_FIELDS] * 50
    by_key = {t["key"]: t for t in got["tasks"]}
    assert by_key["step-00"] | {"id": None} == {
        "id": None,
        "key": "step-00",
        "state": "done",
        "assignee": "w0",
        "attempts": 1,
        "progress": None,
    }
    assert by_key["step-49"]["state"] == "ready" and by_key["step-49"]["assignee"] is None
    assert "src/module_" not in json.dumps(summary) and "migrated" not in json.dumps(summary)
    assert "src/module_" not in text_of(call)
    assert len(json.dumps(summary)) * 4 < len(json.dumps(full))  # what a polling coordinator saves


async def test_detail_full_is_the_default(settings: Settings, mode: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            created = await bus.ok("create_workflow", {"title": "one", "tasks": [{"key": "a", "title": "A"}]})
            wf = created["workflow_id"]
            default = await bus.ok("get_workflow", {"workflow_id": wf})
            full = await bus.ok("get_workflow", {"workflow_id": wf, "detail": "full"})
    assert default == full and "result" in full["workflow"]["tasks"][0]


async def test_without_an_id_either_detail_lists_recent_workflows(settings: Settings, mode: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            await bus.ok("create_workflow", {"title": "one", "tasks": [{"key": "a", "title": "A"}]})
            recent = await bus.ok("get_workflow")
            summary = await bus.ok("get_workflow", {"detail": "summary"})
    assert summary == recent and len(recent["workflows"]) == 1


async def test_an_unknown_detail_is_invalid_argument(settings: Settings, mode: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            await bus.err("get_workflow", {"detail": "brief"}, "invalid_argument", "detail")
