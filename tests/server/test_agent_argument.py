"""`agent` on every tool (SPEC "Every tool takes `agent`"), through a real MCP client session: an agent
told to pass its id on every call can, and a read-only tool uses it for that agent's notices only."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from helpers.mcp_session import ALL_TOOLS, Bus, connect

from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio

TIMEOUT = 20  # bound on one test's MCP traffic; each finishes far sooner
READS: list[tuple[str, dict[str, Any]]] = [
    ("get_workflow", {}),
    ("list_agents", {"include_gone": True}),
    ("read_events", {"after": "0", "limit": 5}),
]


async def unread_for_bob(bus: Bus) -> None:
    await bus.ok("send_message", {"agent": "alice", "to": "bob", "subject": "stop work on auth", "body": "x"})


async def test_every_listed_tool_takes_an_optional_agent(settings: Settings, mode: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            tools = (await bus.client.list_tools()).tools
    assert {t.name for t in tools} == ALL_TOOLS
    for tool in tools:
        assert tool.input_schema["properties"].get("agent") == {"type": "string"}, tool.name
        assert "agent" not in tool.input_schema.get("required", []), tool.name


@pytest.mark.parametrize(("tool", "args"), READS, ids=[name for name, _ in READS])
async def test_a_read_only_tool_brings_the_named_agents_notices(
    settings: Settings, mode: str, tool: str, args: dict[str, Any]
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            await unread_for_bob(bus)
            for_bob = await bus.ok(tool, {**args, "agent": "bob"})
            for_carol = await bus.ok(tool, {**args, "agent": "carol"})
            still = await bus.ok("read_inbox", {"agent": "bob", "peek": True})
    [notice] = for_bob["notices"]
    assert "1 unread message(s)" in notice and "alice" in notice and "stop work on auth" in notice
    assert for_carol["notices"] == []  # another agent's inbox is not carol's business
    assert len(still["messages"]) == 1  # a look at the notices reads nothing


@pytest.mark.parametrize(("tool", "args"), READS, ids=[name for name, _ in READS])
async def test_a_read_only_tool_without_agent_is_for_the_default_agent_or_no_one(
    settings: Settings, mode: str, tool: str, args: dict[str, Any]
) -> None:
    as_bob = settings.model_copy(update={"agent": "bob"})
    anonymous = settings.model_copy(update={"agent": None})
    with anyio.fail_after(TIMEOUT):
        async with connect(as_bob, mode) as bus:
            await unread_for_bob(bus)
            default = await bus.ok(tool, args)
        async with connect(anonymous, mode) as bus:
            nobody = await bus.ok(tool, args)  # a read never needs an agent: it is not refused
    assert len(default["notices"]) == 1 and "stop work on auth" in default["notices"][0]
    assert nobody["notices"] == []


async def test_a_read_only_tool_tells_a_lost_lease_once(settings: Settings, mode: str) -> None:
    """Notices that are told once (a lease taken back) are told by a read-only tool too, and then no more."""
    short = settings.model_copy(update={"reaper_interval_seconds": 0.05})
    with anyio.fail_after(TIMEOUT):
        async with connect(short, mode) as bus:
            await bus.ok("create_task", {"title": "slow"})
            claim = await bus.ok("claim_task", {"agent": "bob", "lease_seconds": 1})
            task_id = claim["task"]["id"]
            while True:  # bounded by the fail_after: the reaper takes the lease back about 1 s on
                reclaimed = await bus.ok("read_events", {"after": "0", "topics": ["task.reclaimed"]})
                if reclaimed["events"]:
                    break
                await anyio.sleep(0.05)
            told = await bus.ok("get_workflow", {"agent": "bob"})
            again = await bus.ok("get_workflow", {"agent": "bob"})
    assert any(task_id in n and "taken back" in n for n in told["notices"]), told["notices"]
    assert not any("taken back" in n for n in again["notices"]), again["notices"]


async def test_a_bad_agent_id_on_a_read_only_tool_is_invalid_argument(settings: Settings, mode: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            for tool, args in READS:
                await bus.err(tool, {**args, "agent": "not an id"}, "invalid_argument", "agent")
