"""The ``tools/list`` answer: within its token budget, and still everything a model needs to call the
tools well (every argument of the contract, types, enums, bounds, required, honest hints). The size
is deterministic, so its budget is asserted; bench/tools_size.py prints the figures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from jsonschema.validators import validator_for
from mcp import Client
from mcp.types import Tool

from mcp_agentbus.server.app import build_server
from mcp_agentbus.server.tools import TOOLS
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio


def _load_bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "tools_size.py"
    spec = importlib.util.spec_from_file_location("tools_size", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("tools_size", module)
    spec.loader.exec_module(module)
    return module


tools_size = _load_bench()

# SPEC.md "Tools": every tool's arguments (the contract), `agent` included ("Every tool takes `agent`").
SPEC_ARGUMENTS = {
    "heartbeat": {"status", "capabilities", "note", "ttl_seconds", "progress", "agent"},
    "list_agents": {"capability", "include_gone", "agent"},
    "create_task": {
        "title",
        "description",
        "capability",
        "priority",
        "payload",
        "depends_on",
        "workflow_id",
        "max_attempts",
        "delay_seconds",
        "idempotency_key",
        "assignee",
        "agent",
    },
    "create_workflow": {"title", "tasks", "idempotency_key", "agent"},
    "claim_task": {"capabilities", "wait_seconds", "lease_seconds", "task_id", "agent"},
    "complete_task": {"task_id", "lease_token", "result", "summary", "agent"},
    "fail_task": {"task_id", "lease_token", "error", "retry", "agent"},
    "get_workflow": {"workflow_id", "detail", "agent"},
    "cancel_task": {"task_id", "workflow_id", "reason", "idempotency_key", "agent"},
    "retry_task": {"task_id", "reason", "idempotency_key", "agent"},
    "send_message": {"to", "body", "subject", "thread_id", "reply_to", "data", "idempotency_key", "agent"},
    "read_inbox": {"limit", "wait_seconds", "peek", "thread_id", "agent"},
    "acquire_lock": {"resource", "ttl_seconds", "wait_seconds", "agent"},
    "release_lock": {"resource", "lock_token", "agent"},
    "publish_event": {"topic", "data", "idempotency_key", "agent"},
    "read_events": {"topics", "after", "limit", "wait_seconds", "agent"},
    "set_state": {
        "key",
        "value",
        "increment",
        "delete",
        "if_version",
        "ttl_seconds",
        "idempotency_key",
        "agent",
    },
    "get_state": {"key", "prefix", "limit", "cursor", "after_version", "wait_seconds", "agent"},
}
WORKFLOW_TASK_FIELDS = {
    "key",
    "title",
    "description",
    "capability",
    "priority",
    "payload",
    "depends_on",
    "max_attempts",
    "assignee",
}
REQUIRED = {
    "create_task": ["title"],
    "create_workflow": ["title", "tasks"],
    "complete_task": ["task_id", "lease_token"],
    "fail_task": ["task_id", "lease_token", "error"],
    "cancel_task": ["reason"],
    "retry_task": ["task_id", "reason"],
    "send_message": ["to", "body"],
    "acquire_lock": ["resource"],
    "release_lock": ["resource", "lock_token"],
    "publish_event": ["topic"],
    "set_state": ["key"],
}
# Keywords the listing leaves to the server's own validation, or that only humans read.
NOT_LISTED = {"title", "pattern", "minLength", "maxLength", "$ref", "$defs", "anyOf"}


@pytest.fixture
async def listed() -> list[Tool]:
    tools: list[Tool] = await tools_size.listed_tools("all")
    return tools


def keywords(schema: Any, where: str) -> list[tuple[str, str]]:
    """Every (place, keyword) in a schema; property names are names, not keywords."""
    found: list[tuple[str, str]] = []
    if isinstance(schema, dict):
        for key, value in schema.items():
            found.append((where, key))
            if key == "properties":
                for name, sub in value.items():
                    found += keywords(sub, f"{where}.{name}")
            else:
                found += keywords(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for item in schema:
            found += keywords(item, where)
    return found


@pytest.mark.parametrize("profile", sorted(tools_size.BUDGET))
async def test_tools_list_is_within_its_token_budget(profile: str) -> None:
    tools = await tools_size.listed_tools(profile)
    tokens = tools_size.total_tokens(tools)
    assert tokens <= tools_size.BUDGET[profile], (
        f"tools/list for profile {profile!r} is {tokens} tokens, over its budget of "
        f"{tools_size.BUDGET[profile]}: per tool {[(t.name, tools_size.tool_tokens(t)) for t in tools]}"
    )


async def test_every_argument_of_the_contract_is_listed(listed: list[Tool]) -> None:
    assert {t.name for t in listed} == set(SPEC_ARGUMENTS)
    for tool in listed:
        assert set(tool.input_schema["properties"]) == SPEC_ARGUMENTS[tool.name], tool.name
        assert tool.input_schema.get("required", []) == REQUIRED.get(tool.name, []), tool.name
    workflow = next(t for t in listed if t.name == "create_workflow")
    task = workflow.input_schema["properties"]["tasks"]["items"]
    assert set(task["properties"]) == WORKFLOW_TASK_FIELDS
    assert task["required"] == ["key", "title"]


async def test_listed_schemas_are_lean_valid_json_schema(listed: list[Tool]) -> None:
    for tool in listed:
        assert tool.description and tool.description == " ".join(tool.description.split()), tool.name
        assert len(tool.description) <= 200, tool.name
        for schema in (tool.input_schema, tool.output_schema):
            assert schema is not None and schema["type"] == "object", tool.name
            validator_for(schema).check_schema(schema)
            for where, key in keywords(schema, tool.name):
                assert key not in NOT_LISTED, f"{where} lists {key!r}"
        for name, arg in tool.input_schema["properties"].items():
            # a default that is what omitting the argument means says nothing (false == 0 among them)
            assert arg.get("default", "unset") not in (None, "", 0, [], {}), f"{tool.name}.{name}"
            if "description" in arg:
                assert arg["description"].strip(), f"{tool.name}.{name}"
    workflow = next(t for t in listed if t.name == "create_workflow")
    assert "description" not in workflow.input_schema["properties"]["tasks"]["items"]  # a docstring


async def test_types_enums_and_bounds_stay(listed: list[Tool]) -> None:
    args = {t.name: t.input_schema["properties"] for t in listed}
    assert args["claim_task"]["lease_seconds"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 86_400,
        "description": "Default 300",
    }
    for tool in ("heartbeat", "acquire_lock"):
        ttl = args[tool]["ttl_seconds"]
        assert (ttl["type"], ttl["minimum"], ttl["maximum"], ttl["default"]) == ("integer", 1, 86_400, 60)
    for tool in ("claim_task", "read_inbox", "acquire_lock", "read_events", "get_state"):
        wait = args[tool]["wait_seconds"]
        assert (wait["type"], wait["minimum"]) == ("number", 0), tool
        assert "cap 25 s" in wait["description"], tool  # the default max_wait_seconds
    assert args["create_task"]["priority"]["enum"] == ["low", "normal", "high", "urgent"]
    assert args["create_task"]["priority"]["default"] == "normal"
    assert args["create_task"]["max_attempts"] | {"description": ""} == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 3,
        "description": "",
    }
    assert args["read_inbox"]["limit"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 20,
        "description": "Max messages",
    }
    assert args["fail_task"]["retry"]["default"] is True
    assert args["heartbeat"]["capabilities"]["type"] == "array"
    assert args["heartbeat"]["capabilities"]["items"] == {"type": "string"}
    assert args["create_workflow"]["tasks"]["minItems"] == 1
    assert args["create_workflow"]["tasks"]["items"]["additionalProperties"] is False
    assert args["complete_task"]["result"] == {"description": "JSON up to 64 KiB"}  # any JSON at all
    for tool, arguments in args.items():
        if "agent" in arguments:
            assert arguments["agent"] == {"type": "string"}, tool


@pytest.mark.parametrize("cap", [7, 0.5])
async def test_every_wait_and_the_instructions_state_this_servers_cap(cap: float) -> None:
    """An agent learns the cap before it trips over it: each wait_seconds says it, and the server's
    instructions say it once."""
    settings = Settings(redis_url="memory://", namespace="tools-size-cap", agent=None, max_wait_seconds=cap)
    async with Client(build_server(settings)) as client:
        tools = (await client.list_tools()).tools
        instructions = client.instructions
    waits = {
        t.name: t.input_schema["properties"]["wait_seconds"]
        for t in tools
        if "wait_seconds" in t.input_schema["properties"]
    }
    assert set(waits) == {"claim_task", "read_inbox", "acquire_lock", "read_events", "get_state"}
    for tool, wait in waits.items():
        assert f"cap {cap:g} s" in wait["description"], (tool, wait)
    assert instructions is not None and instructions.count(f"{cap:g} s") == 1, instructions


async def test_listed_hints_mean_what_the_tools_declare(listed: list[Tool]) -> None:
    """A hint left out of the listing is MCP's default, so the listing says what TOOLS declares."""
    defaults = {"read_only_hint": False, "destructive_hint": True, "idempotent_hint": False}
    for tool in listed:
        declared = TOOLS[tool.name][1]
        assert tool.annotations is not None
        assert tool.annotations.open_world_hint is declared.open_world_hint is False
        hints = {k: getattr(tool.annotations, k) for k in defaults}
        meant = {k: defaults[k] if v is None else v for k, v in hints.items()}
        assert meant["read_only_hint"] == bool(declared.read_only_hint), tool.name
        if not declared.read_only_hint:  # destructive and idempotent mean nothing on a read-only tool
            assert meant["destructive_hint"] == declared.destructive_hint, tool.name
            assert meant["idempotent_hint"] == declared.idempotent_hint, tool.name


async def test_a_format_the_listing_leaves_out_is_still_enforced() -> None:
    """Patterns and string lengths are not listed; the server still refuses what breaks them."""
    settings = Settings(redis_url="memory://", namespace="tools-size-format", agent="tester")
    async with Client(build_server(settings)) as client:
        for tool, arguments, field in [
            ("heartbeat", {"agent": "bad agent"}, "agent"),
            ("complete_task", {"task_id": "x1", "lease_token": "t"}, "task_id"),
            ("release_lock", {"resource": "r", "lock_token": ""}, "lock_token"),
            ("read_events", {"after": "soon"}, "after"),
        ]:
            result = await client.call_tool(tool, arguments)
            assert result.is_error is True, (tool, result)
            assert result.structured_content is not None
            error = result.structured_content["error"]
            assert error["code"] == "invalid_argument", error
            assert field in error["message"], error


def test_the_profiles_name_every_registered_tool_in_tools_list_order() -> None:
    """profiles.py spells the tool names without loading MCP; they must be the registered tools, in order."""
    from mcp_agentbus.server.profiles import PROFILES, TOOL_NAMES, select_tools

    assert tuple(TOOLS) == TOOL_NAMES
    assert select_tools("all") == list(TOOLS)
    assert all(set(names) <= set(TOOLS) for names in PROFILES.values())
