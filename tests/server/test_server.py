"""The MCP server end to end, in memory, through the real `mcp.Client`.

Every test runs in both protocol eras (`auto` lands on 2026-07-28; `legacy` speaks the initialize
handshake, as Claude Code does) and, through the `settings` fixture, on both backends.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from helpers import BACKENDS_AND_ERAS, backend_url, free_port, fresh_settings
from helpers.mcp_session import ALL_TOOLS, WORKER_TOOLS, Bus, assert_tool_error, connect, fill, text_of
from mcp import Client
from pydantic import BaseModel, ValidationError

from mcp_agentbus.errors import explain_validation
from mcp_agentbus.server.app import build_server
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio

READ_ONLY_TOOLS = {"list_agents", "get_workflow", "read_events", "get_state"}
OVERWRITING_TOOLS = {"set_state"}  # destructive: it overwrites and deletes values
# Arguments whose name, type and tool say all (described in the server's instructions or README).
UNDESCRIBED_ARGS = {
    "agent",
    "note",
    "task_id",
    "lease_token",
    "summary",
    "error",
    "workflow_id",
    "body",
    "subject",
    "thread_id",
    "reply_to",
    "data",
    "idempotency_key",
    "lock_token",
    "resource",  # described on acquire_lock, not again on release_lock
    # set_state / get_state: their descriptions say what each argument does
    "key",
    "value",
    "increment",
    "delete",
    "if_version",
    "prefix",
    "cursor",
    "after_version",
    "reason",
    "progress",  # an object whose fields say it: task_id, percent, message
}
ERROR_CODES = {
    "invalid_argument",
    "payload_too_large",
    "unknown_agent",
    "not_found",
    "wrong_state",
    "lease_lost",
    "backend_unavailable",
}

TIMEOUT = 20  # bound on any one test's MCP traffic; every test finishes far sooner


# --- helpers ---------------------------------------------------------------------------------------


# --- tools/list ------------------------------------------------------------------------------------


async def test_lists_exactly_the_bus_tools_fully_described(settings: Settings, mode: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with Client(build_server(settings), mode=mode) as client:
            expected_era = "2025-11-25" if mode == "legacy" else "2026-07-28"
            assert client.protocol_version == expected_era
            tools = (await client.list_tools()).tools

    assert {t.name for t in tools} == ALL_TOOLS
    assert len(tools) == len(ALL_TOOLS)
    for tool in tools:
        assert tool.description and len(tool.description) > 20, tool.name
        assert tool.input_schema["type"] == "object", tool.name
        assert tool.output_schema is not None and tool.output_schema["type"] == "object", tool.name
        for arg, schema in tool.input_schema.get("properties", {}).items():
            # the listing is lean (tests/server/test_tools_size.py): only self-explanatory arguments go bare
            assert schema.get("description") or arg in UNDESCRIBED_ARGS, (
                f"{tool.name}.{arg} has no description"
            )
        # hints left out of the listing mean MCP's defaults: read-only false, destructive true,
        # idempotent false, open-world true
        assert tool.annotations is not None, tool.name
        assert bool(tool.annotations.read_only_hint) is (tool.name in READ_ONLY_TOOLS), tool.name
        assert tool.annotations.open_world_hint is False, tool.name
        if tool.name not in READ_ONLY_TOOLS | OVERWRITING_TOOLS:
            assert tool.annotations.destructive_hint is False, tool.name

    by_name = {t.name: t for t in tools}
    hints = {t.name: t.annotations for t in tools if t.annotations is not None}  # all have them (above)
    assert hints["complete_task"].idempotent_hint is True
    assert hints["fail_task"].idempotent_hint is True
    assert not hints["create_task"].idempotent_hint
    assert not hints["acquire_lock"].idempotent_hint
    assert hints["release_lock"].idempotent_hint is True
    assert set(by_name["complete_task"].input_schema["required"]) == {"task_id", "lease_token"}
    assert set(by_name["create_workflow"].input_schema["required"]) == {"title", "tasks"}
    # every tool takes the optional `agent` (read-only ones for its notices)
    for name in ALL_TOOLS:
        assert "agent" in by_name[name].input_schema["properties"], name
        assert "agent" not in by_name[name].input_schema.get("required", []), name


async def test_worker_profile_lists_and_serves_only_worker_tools(settings: Settings, mode: str) -> None:
    worker = settings.model_copy(update={"tools": "worker"})
    with anyio.fail_after(TIMEOUT):
        async with connect(worker, mode) as bus:
            names = {t.name for t in (await bus.client.list_tools()).tools}
            assert names == WORKER_TOOLS
            await bus.err("create_task", {"title": "not for workers"}, "not_found", "create_task")
            await bus.ok("get_workflow")


async def test_comma_list_profile(settings: Settings, mode: str) -> None:
    picked = settings.model_copy(update={"tools": "heartbeat, get_workflow"})
    with anyio.fail_after(TIMEOUT):
        async with connect(picked, mode) as bus:
            names = {t.name for t in (await bus.client.list_tools()).tools}
    assert names == {"heartbeat", "get_workflow"}


async def test_profile_plus_tools(settings: Settings, mode: str) -> None:
    picked = settings.model_copy(update={"tools": "worker,create_task"})
    with anyio.fail_after(TIMEOUT):
        async with connect(picked, mode) as bus:
            names = {t.name for t in (await bus.client.list_tools()).tools}
            created = await bus.ok("create_task", {"title": "a worker that may create tasks"})
    assert names == WORKER_TOOLS | {"create_task"}
    assert created["state"] == "ready"


async def test_a_flood_of_unknown_arguments_is_refused_in_a_short_error(
    settings: Settings, mode: str
) -> None:
    """40,000 unknown argument names (and one 10,000 characters long): the refusal names the first ten,
    each clipped, and counts the rest, instead of repeating every name back."""
    flood = {f"bogus_{n}": n for n in range(40_000)} | {"x" * 10_000: 1}
    with anyio.fail_after(60):
        async with connect(settings, mode) as bus:
            error = assert_tool_error(
                await bus.call("heartbeat", {"agent": "a", **flood}), "invalid_argument", "bogus_0"
            )
            assert "and 39,991 more" in error["message"], error["message"][-200:]
            assert len(error["message"]) < 2_000, len(error["message"])
            await bus.ok("heartbeat", {"agent": "a"})  # the session serves on


async def test_true_or_false_for_a_number_is_refused_not_read_as_one_or_zero(
    settings: Settings, mode: str
) -> None:
    with anyio.fail_after(60):
        async with connect(settings, mode) as bus:
            for tool, arguments, named in [
                ("heartbeat", {"agent": "a", "ttl_seconds": True}, "ttl_seconds"),
                (
                    "create_task",
                    {"title": "t", "max_attempts": True, "delay_seconds": False},
                    "delay_seconds",
                ),
                ("set_state", {"agent": "a", "key": "k", "increment": True}, "increment"),
                ("claim_task", {"agent": "a", "wait_seconds": True}, "wait_seconds"),
            ]:
                error = assert_tool_error(await bus.call(tool, arguments), "invalid_argument", named)
                assert "not true or false" in error["message"], error
            assert (await bus.ok("get_state", {"key": "k"}))["entries"] == [], "nothing was done"
            assert (await bus.ok("list_agents"))["agents"] == []


def test_a_refusal_of_many_bad_values_names_ten_and_counts_the_rest() -> None:
    class Numbers(BaseModel):
        numbers: list[int]

    with pytest.raises(ValidationError) as refused:
        Numbers(numbers=["x" * 1_000] * 100)
    explained = explain_validation(refused.value)
    assert explained.count("numbers.") == 10 and explained.endswith("; and 90 more problem(s)"), explained
    assert len(explained) < 2_000


# --- a workflow end to end -------------------------------------------------------------------------


async def test_three_level_workflow_end_to_end(settings: Settings, mode: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            alice = await bus.ok("heartbeat", {"agent": "alice", "status": "idle", "capabilities": ["build"]})
            assert alice["agent"]["agent"] == "alice" and alice["joined"] is True
            bob = await bus.ok(
                "heartbeat", {"agent": "bob", "capabilities": ["build", "deploy"], "note": "ready"}
            )
            assert bob["live_agents"] == 2

            created = await bus.ok(
                "create_workflow",
                {
                    "agent": "planner",
                    "title": "release v1",
                    "tasks": [
                        {"key": "plan", "title": "Plan", "payload": {"goal": "ship v1"}},
                        {"key": "api", "title": "Build API", "capability": "build", "depends_on": ["plan"]},
                        {"key": "ui", "title": "Build UI", "capability": "build", "depends_on": ["plan"]},
                        {
                            "key": "ship",
                            "title": "Ship",
                            "capability": "deploy",
                            "priority": "high",
                            "depends_on": ["api", "ui"],
                        },
                    ],
                },
            )
            wf = created["workflow_id"]
            ids = created["task_ids"]
            assert set(ids) == {"plan", "api", "ui", "ship"}
            assert created["ready"] == ["plan"]
            assert created["duplicate"] is False

            # Level 1: alice (build + any) gets the plan; bob finds nothing else ready.
            claim = await bus.ok("claim_task", {"agent": "alice"})
            assert claim["task"]["id"] == ids["plan"]
            assert claim["task"]["key"] == "plan" and claim["task"]["workflow_id"] == wf
            assert claim["task"]["payload"] == {"goal": "ship v1"}
            assert claim["task"]["inputs"] == {}
            assert claim["task"]["attempt"] == 1
            assert claim["lease"]["lease_token"] and claim["lease"]["fence"] >= 1
            nothing = await bus.ok("claim_task", {"agent": "bob"})
            assert nothing["task"] is None and nothing["lease"] is None and nothing["reason"]

            plan_result = {"steps": ["api", "ui"], "owner": "alice"}
            done = await bus.ok(
                "complete_task",
                {
                    "agent": "alice",
                    "task_id": ids["plan"],
                    "lease_token": claim["lease"]["lease_token"],
                    "result": plan_result,
                    "summary": "planned",
                },
            )
            assert done["state"] == "done" and done["already_completed"] is False
            assert sorted(done["unblocked"]) == sorted([ids["api"], ids["ui"]])
            assert done["workflow_id"] == wf and done["workflow_status"] == "running"
            assert done["progress"]["done"] == 1 and done["progress"]["total"] == 4

            # Level 2: both builds carry the plan's result as inputs.
            builds = {}
            for agent in ("alice", "bob"):
                got = await bus.ok("claim_task", {"agent": agent, "capabilities": ["build"]})
                assert got["task"] is not None, got
                assert got["task"]["inputs"] == {"plan": plan_result}
                builds[got["task"]["key"]] = (agent, got)
            assert set(builds) == {"api", "ui"}
            for key, (agent, got) in builds.items():
                await bus.ok(
                    "complete_task",
                    {
                        "agent": agent,
                        "task_id": got["task"]["id"],
                        "lease_token": got["lease"]["lease_token"],
                        "result": {"built": key},
                    },
                )

            # Level 3: only bob can deploy; alice is told where the work is.
            elsewhere = await bus.ok("claim_task", {"agent": "alice"})
            assert elsewhere["task"] is None
            assert elsewhere["ready_elsewhere"] == {"deploy": 1}
            ship = await bus.ok("claim_task", {"agent": "bob", "lease_seconds": 60})
            assert ship["task"]["id"] == ids["ship"] and ship["task"]["priority"] == "high"
            assert ship["task"]["inputs"] == {"api": {"built": "api"}, "ui": {"built": "ui"}}
            final = await bus.ok(
                "complete_task",
                {
                    "agent": "bob",
                    "task_id": ids["ship"],
                    "lease_token": ship["lease"]["lease_token"],
                    "result": "shipped",
                },
            )
            assert final["workflow_status"] == "done"
            assert final["progress"]["done"] == 4 and final["progress"]["total"] == 4

            view = await bus.ok("get_workflow", {"workflow_id": wf})
            recent = await bus.ok("get_workflow")
            agents = await bus.ok("list_agents")
            deployers = await bus.ok("list_agents", {"capability": "deploy"})

    workflow = view["workflow"]
    assert view["workflows"] is None
    assert workflow["workflow_id"] == wf and workflow["title"] == "release v1"
    assert workflow["status"] == "done"
    assert workflow["progress"]["total"] == 4 and workflow["progress"]["done"] == 4
    assert workflow["finished_at"]
    tasks = {t["key"]: t for t in workflow["tasks"]}
    assert {t["state"] for t in tasks.values()} == {"done"}
    assert tasks["plan"]["assignee"] == "alice" and tasks["plan"]["result"] == plan_result
    assert tasks["plan"]["summary"] == "planned"
    assert tasks["ship"]["assignee"] == "bob" and tasks["ship"]["result"] == "shipped"
    assert sorted(tasks["ship"]["depends_on"]) == ["api", "ui"]
    assert {tasks["api"]["assignee"], tasks["ui"]["assignee"]} == {"alice", "bob"}

    assert [w["workflow_id"] for w in recent["workflows"]] == [wf]
    assert recent["workflows"][0]["status"] == "done"
    assert recent["workflow"] is None

    assert {a["agent"] for a in agents["agents"]} == {"alice", "bob"}
    assert all(a["alive"] and a["tasks"] == [] for a in agents["agents"])
    assert [a["agent"] for a in deployers["agents"]] == ["bob"]


async def test_fail_task_retries_then_dies_and_cancels_dependents(settings: Settings, mode: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            created = await bus.ok(
                "create_workflow",
                {
                    "title": "fragile",
                    "tasks": [
                        {"key": "flaky", "title": "Flaky", "max_attempts": 2},
                        {"key": "after", "title": "After", "depends_on": ["flaky"]},
                    ],
                },
            )
            flaky = created["task_ids"]["flaky"]
            first = await bus.ok("claim_task", {"agent": "w1", "task_id": flaky})
            retried = await bus.ok(
                "fail_task",
                {
                    "agent": "w1",
                    "task_id": flaky,
                    "lease_token": first["lease"]["lease_token"],
                    "error": "oops",
                },
            )
            assert retried["state"] in ("ready", "delayed") and retried["retry_at"]
            assert retried["attempts"] == 1 and retried["max_attempts"] == 2

            # the retry is due after a short backoff; a waiting claim picks it up then
            second = await bus.ok("claim_task", {"agent": "w2", "wait_seconds": 3})
            assert second["task"]["id"] == flaky and second["task"]["attempt"] == 2
            dead = await bus.ok(
                "fail_task",
                {
                    "agent": "w2",
                    "task_id": flaky,
                    "lease_token": second["lease"]["lease_token"],
                    "error": "gave up",
                    "retry": False,
                },
            )
            assert dead["state"] == "dead" and dead["retry_at"] is None
            assert dead["cancelled"] == [created["task_ids"]["after"]]

            view = await bus.ok("get_workflow", {"workflow_id": created["workflow_id"]})
    workflow = view["workflow"]
    assert workflow["status"] == "failed"
    states = {t["key"]: t["state"] for t in workflow["tasks"]}
    assert states == {"flaky": "dead", "after": "cancelled"}
    assert next(t for t in workflow["tasks"] if t["key"] == "flaky")["error"] == "gave up"


# --- bad input on every tool -----------------------------------------------------------------------

# Placeholders filled in from a small world: workflow {a; b depends on a}, with a claimed by "tester".
CLAIMED, BLOCKED, WORKFLOW = "<claimed>", "<blocked>", "<workflow>"

BIG = "x" * 70_000  # > 64 KiB of JSON
TOO_MANY_TASKS = [{"key": f"k{i}", "title": f"task {i}"} for i in range(201)]
HEAVY_TASKS = [{"key": f"k{i}", "title": "t", "payload": "y" * 63_000} for i in range(17)]  # > 1 MiB total
CYCLE = [
    {"key": "a", "title": "A", "depends_on": ["c"]},
    {"key": "b", "title": "B", "depends_on": ["a"]},
    {"key": "c", "title": "C", "depends_on": ["b"]},
]

BAD_INPUT = [
    # heartbeat
    pytest.param("heartbeat", {"ttl_seconds": 0}, "invalid_argument", ["ttl_seconds"], id="heartbeat-ttl-0"),
    pytest.param(
        "heartbeat", {"ttl_seconds": 86_401}, "invalid_argument", ["ttl_seconds"], id="heartbeat-ttl-86401"
    ),
    pytest.param(
        "heartbeat", {"ttl_seconds": "soon"}, "invalid_argument", ["ttl_seconds"], id="heartbeat-ttl-string"
    ),
    pytest.param(
        "heartbeat", {"agent": "bad agent"}, "invalid_argument", ["agent"], id="heartbeat-bad-agent"
    ),
    pytest.param(
        "heartbeat", {"capabilities": ["a/b"]}, "invalid_argument", ["capabilities"], id="heartbeat-bad-cap"
    ),
    pytest.param(
        "heartbeat",
        {"capabilities": "build"},
        "invalid_argument",
        ["capabilities"],
        id="heartbeat-caps-string",
    ),
    pytest.param("heartbeat", {"status": ""}, "invalid_argument", ["status"], id="heartbeat-empty-status"),
    pytest.param("heartbeat", {"ttl": 5}, "invalid_argument", ["ttl"], id="heartbeat-unknown-arg"),
    # list_agents
    pytest.param(
        "list_agents", {"capability": "a/b"}, "invalid_argument", ["capability"], id="list_agents-bad-cap"
    ),
    pytest.param(
        "list_agents", {"include_gone": "maybe"}, "invalid_argument", ["include_gone"], id="list_agents-bool"
    ),
    pytest.param(
        "list_agents", {"agents": "me"}, "invalid_argument", ["agents"], id="list_agents-unknown-arg"
    ),
    # create_task
    pytest.param(
        "create_task", {}, "invalid_argument", ["title", "required"], id="create_task-missing-title"
    ),
    pytest.param("create_task", {"title": ["a"]}, "invalid_argument", ["title"], id="create_task-title-list"),
    pytest.param("create_task", {"title": ""}, "invalid_argument", ["title"], id="create_task-title-empty"),
    pytest.param(
        "create_task",
        {"title": "t", "max_attempts": 0},
        "invalid_argument",
        ["max_attempts"],
        id="create_task-max-attempts-0",
    ),
    pytest.param(
        "create_task",
        {"title": "t", "delay_seconds": -1},
        "invalid_argument",
        ["delay_seconds"],
        id="create_task-delay-negative",
    ),
    pytest.param(
        "create_task",
        {"title": "t", "capability": "a/b"},
        "invalid_argument",
        ["capability"],
        id="create_task-bad-cap",
    ),
    pytest.param(
        "create_task",
        {"title": "t", "priority": "asap"},
        "invalid_argument",
        ["priority"],
        id="create_task-prio",
    ),
    pytest.param(
        "create_task",
        {"title": "t", "payload": {"blob": BIG}},
        "payload_too_large",
        ["payload", "65,536"],
        id="create_task-payload-too-large",
    ),
    pytest.param(
        "create_task",
        {"title": "t", "depends_on": ["x"]},
        "invalid_argument",
        ["depends_on"],
        id="create_task-dep-id",
    ),
    pytest.param(
        "create_task",
        {"title": "t", "depends_on": ["t-999999"]},
        "invalid_argument",
        ["t-999999"],
        id="create_task-dep-unknown",
    ),
    pytest.param(
        "create_task",
        {"title": "t", "workflow_id": "nope"},
        "invalid_argument",
        ["workflow_id"],
        id="create_task-bad-workflow-id",
    ),
    pytest.param(
        "create_task",
        {"title": "t", "workflow_id": "wf-999999"},
        "not_found",
        ["wf-999999"],
        id="create_task-unknown-workflow",
    ),
    pytest.param(
        "create_task",
        {"title": "t", "idempotency_key": "has space"},
        "invalid_argument",
        ["idempotency_key"],
        id="create_task-bad-idempotency-key",
    ),
    pytest.param(
        "create_task",
        {"title": "t", "agent": "bad agent"},
        "invalid_argument",
        ["agent"],
        id="create_task-agent",
    ),
    pytest.param(
        "create_task", {"title": "t", "name": "x"}, "invalid_argument", ["name"], id="create_task-unknown-arg"
    ),
    # create_workflow
    pytest.param(
        "create_workflow",
        {"title": "w"},
        "invalid_argument",
        ["tasks", "required"],
        id="create_workflow-no-tasks",
    ),
    pytest.param(
        "create_workflow",
        {"title": "w", "tasks": []},
        "invalid_argument",
        ["tasks"],
        id="create_workflow-empty",
    ),
    pytest.param(
        "create_workflow",
        {"title": "w", "tasks": "do it all"},
        "invalid_argument",
        ["tasks"],
        id="create_workflow-tasks-string",
    ),
    pytest.param(
        "create_workflow",
        {"title": "w", "tasks": TOO_MANY_TASKS},
        "invalid_argument",
        ["tasks", "200"],
        id="create_workflow-201-tasks",
    ),
    pytest.param(
        "create_workflow",
        {"title": "w", "tasks": CYCLE},
        "invalid_argument",
        ["cycle", "a", "b", "c"],
        id="create_workflow-cycle",
    ),
    pytest.param(
        "create_workflow",
        {"title": "w", "tasks": [{"key": "a", "title": "A", "depends_on": ["a"]}]},
        "invalid_argument",
        ["itself"],
        id="create_workflow-self-dependency",
    ),
    pytest.param(
        "create_workflow",
        {"title": "w", "tasks": [{"key": "a", "title": "A", "depends_on": ["ghost"]}]},
        "invalid_argument",
        ["unknown", "ghost"],
        id="create_workflow-unknown-dependency",
    ),
    pytest.param(
        "create_workflow",
        {"title": "w", "tasks": [{"key": "a", "title": "A"}, {"key": "a", "title": "A again"}]},
        "invalid_argument",
        ["'a'", "twice"],
        id="create_workflow-duplicate-key",
    ),
    pytest.param(
        "create_workflow",
        {"title": "w", "tasks": [{"key": "bad key", "title": "A"}]},
        "invalid_argument",
        ["key"],
        id="create_workflow-bad-key",
    ),
    pytest.param(
        "create_workflow",
        {"title": "w", "tasks": [{"key": "a", "title": "A", "max_attempts": 0}]},
        "invalid_argument",
        ["max_attempts"],
        id="create_workflow-max-attempts-0",
    ),
    pytest.param(
        "create_workflow",
        {"title": "w", "tasks": [{"key": "a", "title": "A", "payload": BIG}]},
        "payload_too_large",
        ["payload", "'a'"],
        id="create_workflow-payload-too-large",
    ),
    pytest.param(
        "create_workflow",
        {"title": "w", "tasks": HEAVY_TASKS},
        "payload_too_large",
        ["total"],
        id="create_workflow-payloads-over-1MiB",
    ),
    pytest.param(
        "create_workflow",
        {"title": ["w"], "tasks": [{"key": "a", "title": "A"}]},
        "invalid_argument",
        ["title"],
        id="create_workflow-title-list",
    ),
    pytest.param(
        "create_workflow",
        {"title": "w", "steps": [{"key": "a", "title": "A"}]},
        "invalid_argument",
        ["steps"],
        id="create_workflow-unknown-arg",
    ),
    # claim_task
    pytest.param(
        "claim_task",
        {"wait_seconds": "abc"},
        "invalid_argument",
        ["wait_seconds"],
        id="claim_task-wait-string",
    ),
    pytest.param(
        "claim_task",
        {"wait_seconds": -1},
        "invalid_argument",
        ["wait_seconds"],
        id="claim_task-wait-negative",
    ),
    pytest.param(
        "claim_task", {"lease_seconds": 0}, "invalid_argument", ["lease_seconds"], id="claim_task-lease-0"
    ),
    pytest.param(
        "claim_task",
        {"lease_seconds": 86_401},
        "invalid_argument",
        ["lease_seconds"],
        id="claim_task-lease-86401",
    ),
    pytest.param(
        "claim_task",
        {"lease_seconds": "long"},
        "invalid_argument",
        ["lease_seconds"],
        id="claim_task-lease-string",
    ),
    pytest.param(
        "claim_task", {"capabilities": ["a/b"]}, "invalid_argument", ["capabilities"], id="claim_task-bad-cap"
    ),
    pytest.param(
        "claim_task",
        {"capabilities": [f"c{i}" for i in range(21)]},
        "invalid_argument",
        ["capabilities"],
        id="claim_task-21-capabilities",
    ),
    pytest.param(
        "claim_task", {"task_id": "x"}, "invalid_argument", ["task_id"], id="claim_task-bad-task-id"
    ),
    pytest.param(
        "claim_task", {"task_id": "t-999999"}, "not_found", ["t-999999"], id="claim_task-unknown-task"
    ),
    pytest.param("claim_task", {"task_id": BLOCKED}, "wrong_state", ["blocked"], id="claim_task-not-ready"),
    pytest.param(
        "claim_task",
        {"task_id": CLAIMED, "agent": "someone-else"},  # its holder gets its lease again
        "wrong_state",
        ["claimed"],
        id="claim_task-already-claimed",
    ),
    pytest.param(
        "claim_task", {"agent": "bad agent"}, "invalid_argument", ["agent"], id="claim_task-bad-agent"
    ),
    pytest.param("claim_task", {"wait": 1}, "invalid_argument", ["wait"], id="claim_task-unknown-arg"),
    # complete_task
    pytest.param(
        "complete_task", {}, "invalid_argument", ["task_id", "lease_token"], id="complete_task-missing-args"
    ),
    pytest.param(
        "complete_task",
        {"task_id": "x", "lease_token": "tok"},
        "invalid_argument",
        ["task_id"],
        id="complete_task-bad-task-id",
    ),
    pytest.param(
        "complete_task",
        {"task_id": "t-999999", "lease_token": "tok"},
        "not_found",
        ["t-999999"],
        id="complete_task-unknown-task",
    ),
    pytest.param(
        "complete_task",
        {"task_id": CLAIMED, "lease_token": ""},
        "invalid_argument",
        ["lease_token"],
        id="complete_task-empty-token",
    ),
    pytest.param(
        "complete_task",
        {"task_id": CLAIMED, "lease_token": "stale-token"},
        "lease_lost",
        [],
        id="complete_task-stale-token",
    ),
    pytest.param(
        "complete_task",
        {"task_id": BLOCKED, "lease_token": "never-claimed"},
        "wrong_state",
        ["blocked"],
        id="complete_task-unclaimed-task",
    ),
    pytest.param(
        "complete_task",
        {"task_id": CLAIMED, "lease_token": "<token>", "result": {"blob": BIG}},
        "payload_too_large",
        ["result"],
        id="complete_task-result-too-large",
    ),
    pytest.param(
        "complete_task",
        {"task_id": CLAIMED, "lease_token": "<token>", "summary": "s" * 2_001},
        "invalid_argument",
        ["summary"],
        id="complete_task-summary-too-long",
    ),
    pytest.param(
        "complete_task",
        {"task_id": CLAIMED, "lease_token": "<token>", "agent": "bad agent"},
        "invalid_argument",
        ["agent"],
        id="complete_task-bad-agent",
    ),
    pytest.param(
        "complete_task",
        {"task_id": CLAIMED, "lease_token": "<token>", "output": 1},
        "invalid_argument",
        ["output"],
        id="complete_task-unknown-arg",
    ),
    # fail_task
    pytest.param(
        "fail_task",
        {"task_id": CLAIMED, "lease_token": "<token>"},
        "invalid_argument",
        ["error", "required"],
        id="fail_task-missing-error",
    ),
    pytest.param(
        "fail_task",
        {"task_id": CLAIMED, "lease_token": "<token>", "error": ""},
        "invalid_argument",
        ["error"],
        id="fail_task-empty-error",
    ),
    pytest.param(
        "fail_task",
        {"task_id": "x", "lease_token": "tok", "error": "e"},
        "invalid_argument",
        ["task_id"],
        id="fail_task-bad-task-id",
    ),
    pytest.param(
        "fail_task",
        {"task_id": "t-999999", "lease_token": "tok", "error": "e"},
        "not_found",
        ["t-999999"],
        id="fail_task-unknown-task",
    ),
    pytest.param(
        "fail_task",
        {"task_id": CLAIMED, "lease_token": "stale-token", "error": "e"},
        "lease_lost",
        [],
        id="fail_task-stale-token",
    ),
    pytest.param(
        "fail_task",
        {"task_id": CLAIMED, "lease_token": "<token>", "error": "e", "retry": "perhaps"},
        "invalid_argument",
        ["retry"],
        id="fail_task-retry-string",
    ),
    pytest.param(
        "fail_task",
        {"task_id": CLAIMED, "lease_token": "<token>", "error": "e", "agent": "bad agent"},
        "invalid_argument",
        ["agent"],
        id="fail_task-bad-agent",
    ),
    pytest.param(
        "fail_task",
        {"task_id": CLAIMED, "lease_token": "<token>", "error": "e", "reason": "x"},
        "invalid_argument",
        ["reason"],
        id="fail_task-unknown-arg",
    ),
    # get_workflow
    pytest.param(
        "get_workflow", {"workflow_id": "nope"}, "invalid_argument", ["workflow_id"], id="get_workflow-bad-id"
    ),
    pytest.param(
        "get_workflow", {"workflow_id": 7}, "invalid_argument", ["workflow_id"], id="get_workflow-id-number"
    ),
    pytest.param(
        "get_workflow", {"workflow_id": "wf-999999"}, "not_found", ["wf-999999"], id="get_workflow-unknown"
    ),
    pytest.param("get_workflow", {"id": WORKFLOW}, "invalid_argument", ["id"], id="get_workflow-unknown-arg"),
    # set_state / get_state
    pytest.param("set_state", {"key": "k"}, "invalid_argument", ["exactly one"], id="set_state-no-op"),
    pytest.param(
        "set_state",
        {"key": "k", "value": 1, "delete": True},
        "invalid_argument",
        ["exactly one"],
        id="set_state-two",
    ),
    pytest.param(
        "set_state", {"key": "../k", "value": 1}, "invalid_argument", ["key"], id="set_state-climbs"
    ),
    pytest.param("set_state", {"key": "", "value": 1}, "invalid_argument", ["key"], id="set_state-empty-key"),
    pytest.param("set_state", {"key": "k", "value": BIG}, "payload_too_large", ["value"], id="set_state-big"),
    pytest.param(
        "set_state",
        {"key": "k", "value": 1, "ttl_seconds": 0},
        "invalid_argument",
        ["ttl"],
        id="set_state-ttl-0",
    ),
    pytest.param(
        "set_state",
        {"key": "k", "value": 1, "if_version": -1},
        "invalid_argument",
        ["if_version"],
        id="set_state-v",
    ),
    pytest.param(
        "set_state",
        {"key": "k", "increment": "one"},
        "invalid_argument",
        ["increment"],
        id="set_state-inc-str",
    ),
    pytest.param("get_state", {}, "invalid_argument", ["key or prefix"], id="get_state-neither"),
    pytest.param(
        "get_state", {"key": "a", "prefix": "a"}, "invalid_argument", ["key or prefix"], id="get_state-both"
    ),
    pytest.param(
        "get_state",
        {"key": "a", "wait_seconds": 1},
        "invalid_argument",
        ["after_version"],
        id="get_state-wait",
    ),
    pytest.param(
        "get_state", {"prefix": "a", "limit": 201}, "invalid_argument", ["limit"], id="get_state-limit"
    ),
    # cancel_task, retry_task, and assignee and progress (issue 16)
    pytest.param("cancel_task", {"task_id": CLAIMED}, "invalid_argument", ["reason"], id="cancel-no-reason"),
    pytest.param("cancel_task", {"reason": "r"}, "invalid_argument", ["exactly one"], id="cancel-no-target"),
    pytest.param(
        "cancel_task",
        {"reason": "r", "task_id": CLAIMED, "workflow_id": WORKFLOW},
        "invalid_argument",
        ["exactly one"],
        id="cancel-both-targets",
    ),
    pytest.param(
        "cancel_task",
        {"reason": "", "task_id": CLAIMED},
        "invalid_argument",
        ["reason"],
        id="cancel-empty-reason",
    ),
    pytest.param(
        "cancel_task",
        {"reason": "r" * 501, "task_id": CLAIMED},
        "invalid_argument",
        ["reason"],
        id="cancel-reason-too-long",
    ),
    pytest.param(
        "cancel_task", {"reason": "r", "task_id": "t-999999"}, "not_found", ["t-999999"], id="cancel-unknown"
    ),
    pytest.param(
        "cancel_task",
        {"reason": "r", "workflow_id": "wf-999999"},
        "not_found",
        ["wf-999999"],
        id="cancel-unknown-workflow",
    ),
    pytest.param(
        "retry_task", {"task_id": CLAIMED, "reason": "r"}, "wrong_state", ["claimed"], id="retry-not-final"
    ),
    pytest.param("retry_task", {"task_id": BLOCKED}, "invalid_argument", ["reason"], id="retry-no-reason"),
    pytest.param(
        "retry_task", {"task_id": "x", "reason": "r"}, "invalid_argument", ["task_id"], id="retry-bad-id"
    ),
    pytest.param(
        "create_task",
        {"title": "t", "assignee": "b b"},
        "invalid_argument",
        ["assignee"],
        id="create-bad-assignee",
    ),
    pytest.param(
        "heartbeat",
        {"progress": {"task_id": BLOCKED, "percent": 5}},
        "wrong_state",
        [BLOCKED, "blocked"],
        id="heartbeat-progress-not-held",
    ),
    pytest.param(
        "heartbeat",
        {"progress": {"task_id": CLAIMED, "percent": 101}},
        "invalid_argument",
        ["percent"],
        id="heartbeat-progress-over-100",
    ),
    pytest.param(
        "heartbeat",
        {"progress": {"task_id": CLAIMED, "pct": 5}},
        "invalid_argument",
        ["percent"],
        id="heartbeat-progress-misspelt",
    ),
    # a tool that does not exist
    pytest.param("delete_everything", {}, "not_found", ["delete_everything"], id="unknown-tool"),
]


async def make_world(bus: Bus) -> dict[str, str]:
    created = await bus.ok(
        "create_workflow",
        {
            "title": "world",
            "tasks": [{"key": "a", "title": "A"}, {"key": "b", "title": "B", "depends_on": ["a"]}],
        },
    )
    claim = await bus.ok("claim_task", {"task_id": created["task_ids"]["a"]})
    return {
        CLAIMED: created["task_ids"]["a"],
        BLOCKED: created["task_ids"]["b"],
        WORKFLOW: created["workflow_id"],
        "<token>": claim["lease"]["lease_token"],
    }


@pytest.fixture(
    scope="module",
    params=BACKENDS_AND_ERAS,
    ids=lambda p: "-".join(p),
)
async def shared_bus(request: pytest.FixtureRequest, real_redis_url: str | None) -> AsyncIterator[Bus]:
    """One server and session per backend and era for the whole bad-input matrix: fast, and it also
    shows that a server keeps answering correctly after a long run of refused calls."""
    backend, mode = request.param
    url = backend_url(backend, real_redis_url)
    async with connect(fresh_settings(url), mode) as bus:
        yield bus


@pytest.mark.parametrize(("tool", "args", "code", "fragments"), BAD_INPUT)
async def test_bad_input_is_a_clear_tool_error(
    shared_bus: Bus, tool: str, args: dict[str, Any], code: str, fragments: list[str]
) -> None:
    assert code in ERROR_CODES
    bus = shared_bus
    with anyio.fail_after(TIMEOUT):
        world = await make_world(bus) if "<" in json.dumps(args)[:2_000] else {}
        before = await bus.ok("get_workflow")
        await bus.err(tool, fill(args, world), code, *[fill(f, world) for f in fragments])
        # The refusal changed nothing, and the server keeps answering.
        assert await bus.ok("get_workflow") == before
        if world:
            view = await bus.ok("get_workflow", {"workflow_id": world[WORKFLOW]})
            states = {t["key"]: t["state"] for t in view["workflow"]["tasks"]}
            assert states == {"a": "claimed", "b": "blocked"}


async def test_unknown_fields_inside_workflow_tasks_are_refused(settings: Settings, mode: str) -> None:
    """A typo in a task's field (`depnds_on`) must not silently create a task without its dependency."""
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            result = await bus.call(
                "create_workflow",
                {
                    "title": "typo",
                    "tasks": [
                        {"key": "a", "title": "A"},
                        {"key": "b", "title": "B", "depnds_on": ["a"]},
                    ],
                },
            )
            assert_tool_error(result, "invalid_argument", "depnds_on")


ACTING_CALLS = [
    pytest.param("heartbeat", {}, id="heartbeat"),
    pytest.param("create_task", {"title": "t"}, id="create_task"),
    pytest.param(
        "create_workflow", {"title": "w", "tasks": [{"key": "a", "title": "A"}]}, id="create_workflow"
    ),
    pytest.param("claim_task", {}, id="claim_task"),
    pytest.param("complete_task", {"task_id": "t-1", "lease_token": "tok"}, id="complete_task"),
    pytest.param("fail_task", {"task_id": "t-1", "lease_token": "tok", "error": "e"}, id="fail_task"),
]


@pytest.mark.parametrize(("tool", "args"), ACTING_CALLS)
async def test_no_agent_anywhere_is_unknown_agent(
    settings: Settings, mode: str, tool: str, args: dict[str, Any]
) -> None:
    anonymous = settings.model_copy(update={"agent": None})
    with anyio.fail_after(TIMEOUT):
        async with connect(anonymous, mode) as bus:
            await bus.err(tool, args, "unknown_agent", "agent")
            # naming the agent in the call works, and read-only tools need none
            await bus.ok("get_workflow")
            if tool != "claim_task":
                return
            await bus.ok("heartbeat", {"agent": "named"})
            assert (await bus.ok("claim_task", {"agent": "named"}))["task"] is None
            assert [a["agent"] for a in (await bus.ok("list_agents"))["agents"]] == ["named"]


# --- idempotency -----------------------------------------------------------------------------------


async def test_idempotent_create_and_complete(settings: Settings, mode: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            args = {"title": "once", "payload": {"n": 1}, "idempotency_key": "create-once-1"}
            first = await bus.ok("create_task", args)
            again = await bus.ok("create_task", args)
            assert first["duplicate"] is False and again["duplicate"] is True
            assert again["task_id"] == first["task_id"] and again["state"] == first["state"]
            # keys are per agent: another agent's same key is another task
            other = await bus.ok("create_task", {**args, "agent": "someone-else"})
            assert other["task_id"] != first["task_id"] and other["duplicate"] is False

            wf_args = {"title": "wf once", "tasks": [{"key": "a", "title": "A"}], "idempotency_key": "wf-1"}
            wf1 = await bus.ok("create_workflow", wf_args)
            wf2 = await bus.ok("create_workflow", wf_args)
            assert wf2["duplicate"] is True and wf1["duplicate"] is False
            assert wf2["workflow_id"] == wf1["workflow_id"] and wf2["task_ids"] == wf1["task_ids"]
            listed = await bus.ok("get_workflow")
            assert [w["workflow_id"] for w in listed["workflows"]] == [wf1["workflow_id"]]

            claim = await bus.ok("claim_task", {"task_id": first["task_id"]})
            done_args = {
                "task_id": first["task_id"],
                "lease_token": claim["lease"]["lease_token"],
                "result": 42,
            }
            done = await bus.ok("complete_task", done_args)
            repeat = await bus.ok("complete_task", done_args)
            assert done["already_completed"] is False and repeat["already_completed"] is True
            assert repeat["state"] == "done" and repeat["task_id"] == first["task_id"]
            assert "already" in text_of(await bus.call("complete_task", done_args))

            # fail_task is safe to repeat with the same token too
            claim2 = await bus.ok("claim_task", {"task_id": other["task_id"]})
            fail_args = {
                "task_id": other["task_id"],
                "lease_token": claim2["lease"]["lease_token"],
                "error": "x",
            }
            failed = await bus.ok("fail_task", {**fail_args, "retry": False})
            failed_again = await bus.ok("fail_task", {**fail_args, "retry": False})
            assert failed["state"] == "dead" and failed["already_failed"] is False
            assert failed_again["state"] == "dead" and failed_again["already_failed"] is True


# --- waiting ---------------------------------------------------------------------------------------


async def test_waiting_claim_gets_a_task_created_by_another_client(settings: Settings, mode: str) -> None:
    got: dict[str, Any] = {}
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as maker, connect(settings, mode) as waiter:

            async def wait_for_work() -> None:
                got["claim"] = await waiter.ok("claim_task", {"agent": "waiter", "wait_seconds": 5})

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_for_work)
                await anyio.sleep(0.3)  # let the claim start waiting first
                created = await maker.ok("create_task", {"agent": "maker", "title": "late work"})
            view = await maker.ok("list_agents")  # presence is shared too: nobody heartbeat yet
    assert got["claim"]["task"] is not None, got
    assert got["claim"]["task"]["id"] == created["task_id"]
    assert got["claim"]["task"]["title"] == "late work"
    assert view["agents"] == []


async def test_waiting_claim_sends_progress(settings: Settings, mode: str) -> None:
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            result = await bus.ok("claim_task", {"wait_seconds": 2.5}, progress_callback=on_progress)
    assert result["task"] is None and result["reason"]
    assert result["notices"] == []
    assert updates, "no progress notification arrived during a 2.5 s wait"
    progresses = [p for p, _, _ in updates]
    assert progresses == sorted(progresses) and len(set(progresses)) == len(progresses)
    for _, total, message in updates:
        assert total == 2.5
        assert message and "waiting" in message


async def test_wait_progress_never_exceeds_its_total(mode: str) -> None:
    """Progress past `total` ("3 s of 2.5 s") reads as a broken progress bar to a client.
    (Server-side arithmetic, the same on both backends: runs on the embedded one only.)"""
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    with anyio.fail_after(TIMEOUT):
        async with connect(fresh_settings(f"memory://{uuid.uuid4().hex}"), mode) as bus:
            await bus.ok("claim_task", {"wait_seconds": 1.2}, progress_callback=on_progress)
    assert updates
    for progress, total, message in updates:
        assert total is not None and progress <= total, (progress, total, message)


async def test_wait_above_the_cap_is_capped_with_a_notice(settings: Settings, mode: str) -> None:
    capped = settings.model_copy(update={"max_wait_seconds": 0.5})
    with anyio.fail_after(TIMEOUT):
        async with connect(capped, mode) as bus:
            result = await bus.call("claim_task", {"wait_seconds": 60})
            data = await bus.ok("claim_task", {"wait_seconds": 0.1})
            at_cap = await bus.ok("claim_task", {"wait_seconds": 0.5})
    assert result.is_error is not True
    assert result.structured_content is not None and result.structured_content["task"] is None
    notices = result.structured_content["notices"]
    assert len(notices) == 1 and "cap" in notices[0] and "60" in notices[0]
    assert "Notice:" in text_of(result)
    assert data["notices"] == [] and at_cap["notices"] == []  # up to the cap: no notice


# --- leases ----------------------------------------------------------------------------------------


async def test_expired_lease_is_taken_back_and_the_old_token_is_refused(
    settings: Settings, mode: str
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            created = await bus.ok(
                "create_workflow", {"title": "lease", "tasks": [{"key": "only", "title": "T"}]}
            )
            wf, task_id = created["workflow_id"], created["task_ids"]["only"]
            first = await bus.ok("claim_task", {"agent": "slow", "task_id": task_id, "lease_seconds": 1})
            old = first["lease"]
            assert first["task"]["attempt"] == 1

            with anyio.fail_after(10):  # the reaper runs every 0.1 s in test settings
                while True:
                    view = await bus.ok("get_workflow", {"workflow_id": wf})
                    task = view["workflow"]["tasks"][0]
                    if task["state"] != "claimed":
                        break
                    await anyio.sleep(0.05)
            assert task["state"] == "ready" and task["assignee"] is None
            assert task["error"] and "expired" in task["error"]

            await bus.err(
                "complete_task",
                {"agent": "slow", "task_id": task_id, "lease_token": old["lease_token"], "result": "late"},
                "lease_lost",
                task_id,
            )
            await bus.err(
                "fail_task",
                {"agent": "slow", "task_id": task_id, "lease_token": old["lease_token"], "error": "late"},
                "lease_lost",
            )
            beat = await bus.ok("heartbeat", {"agent": "slow"})
            assert beat["leases_extended"] == []

            second = await bus.ok("claim_task", {"agent": "fast"})
            assert second["task"]["id"] == task_id and second["task"]["attempt"] == 2
            assert second["lease"]["fence"] > old["fence"]
            assert second["lease"]["lease_token"] != old["lease_token"]
            await bus.ok(
                "complete_task",
                {
                    "agent": "fast",
                    "task_id": task_id,
                    "lease_token": second["lease"]["lease_token"],
                    "result": 1,
                },
            )
            await bus.err(
                "complete_task",
                {"agent": "slow", "task_id": task_id, "lease_token": old["lease_token"]},
                "lease_lost",
            )
            final = await bus.ok("get_workflow", {"workflow_id": wf})
    done = final["workflow"]["tasks"][0]
    assert done["state"] == "done" and done["assignee"] == "fast" and done["result"] == 1


# --- a backend that is not there -------------------------------------------------------------------


async def test_unreachable_backend_is_backend_unavailable_and_the_server_stays_up(mode: str) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    dead = Settings(redis_url=url, namespace="nowhere", agent="tester", reaper_interval_seconds=0.1)
    with anyio.fail_after(TIMEOUT):
        async with connect(dead, mode) as bus:
            calls: list[tuple[str, dict[str, Any]]] = [
                ("create_task", {"title": "t"}),
                ("claim_task", {"wait_seconds": 1}),
                ("get_workflow", {}),  # every call fails the same way: nothing is stuck
            ]
            for tool, args in calls:
                with anyio.fail_after(10):
                    error = await bus.err(tool, args, "backend_unavailable", "unreachable")
                assert "hunter2" not in json.dumps(error) and "127.0.0.1" not in json.dumps(error)
            # the protocol side keeps working, and bad input is still reported as such
            assert {t.name for t in (await bus.client.list_tools()).tools} == ALL_TOOLS
            await bus.err("get_workflow", {"workflow_id": "nope"}, "invalid_argument", "workflow_id")
