"""Presence through the core API: heartbeats, the agent list, and agents that go silent."""

from __future__ import annotations

import anyio
import pytest

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import AgentView
from mcp_agentbus.errors import InvalidArgument
from mcp_agentbus.redis.connection import MAX_CONNECTIONS

pytestmark = pytest.mark.anyio


async def agent_in_list(bus: AgentBus, agent: str, *, include_gone: bool = False) -> AgentView | None:
    listed = await bus.presence.list_agents(include_gone=include_gone)
    return next((a for a in listed.agents if a.agent == agent), None)


async def test_the_first_heartbeat_joins_and_later_ones_do_not(bus: AgentBus) -> None:
    first = await bus.presence.heartbeat("alice", status="idle", capabilities=["python"], note="hello")
    second = await bus.presence.heartbeat("alice", status="busy")

    assert first.joined is True
    assert second.joined is False
    assert first.agent.agent == "alice"
    assert first.agent.alive is True
    assert first.agent.joined_at is not None
    assert second.agent.joined_at == first.agent.joined_at
    assert second.agent.status == "busy"
    assert first.leases_extended == []
    assert first.live_agents == 1


async def test_a_new_status_or_note_is_an_event_and_a_repeated_one_is_not(bus: AgentBus) -> None:
    """Watchers (the web page, read_events) see what an agent says it is doing when it says it, not at
    their next full look; a heartbeat that only renews writes nothing to the log."""
    await bus.presence.heartbeat("erin", status="busy", note="reading the spec")
    await bus.presence.heartbeat("erin", status="busy", note="reading the spec")
    await bus.presence.heartbeat("erin", status="busy", note="writing tests")
    await bus.presence.heartbeat("erin", status="idle", note="writing tests")
    await bus.presence.heartbeat("erin", status="idle", note="writing tests")

    events = (await bus.events.read(topics=["agent.*"], after="0")).events
    assert [(e.topic, e.data.get("status"), e.data.get("note")) for e in events] == [
        ("agent.joined", "busy", "reading the spec"),
        ("agent.status", "busy", "writing tests"),
        ("agent.status", "idle", "writing tests"),
    ]
    assert events[1].data["was"] == "busy"


async def test_capabilities_are_kept_when_omitted_and_replaced_when_given(bus: AgentBus) -> None:
    await bus.presence.heartbeat("bob", capabilities=["python", "review"])
    kept = await bus.presence.heartbeat("bob", status="busy")
    assert kept.agent.capabilities == ["python", "review"]

    replaced = await bus.presence.heartbeat("bob", capabilities=["rust"])
    assert replaced.agent.capabilities == ["rust"]
    listed = await agent_in_list(bus, "bob")
    assert listed is not None
    assert listed.capabilities == ["rust"]

    cleared = await bus.presence.heartbeat("bob", capabilities=[])
    assert cleared.agent.capabilities == []


async def test_list_agents_shows_status_capabilities_and_held_tasks(bus: AgentBus) -> None:
    await bus.presence.heartbeat("carol", status="busy", capabilities=["docs"], note="writing the README")
    await bus.presence.heartbeat("dave")
    first = await bus.tasks.create("planner", title="one")
    second = await bus.tasks.create("planner", title="two")
    claim_1 = await bus.tasks.claim("carol")
    claim_2 = await bus.tasks.claim("carol")
    assert claim_1.lease is not None
    assert claim_2.lease is not None

    listed = await bus.presence.list_agents()
    by_id = {a.agent: a for a in listed.agents}
    assert set(by_id) == {"carol", "dave"}
    carol = by_id["carol"]
    assert carol.alive
    assert carol.status == "busy"
    assert carol.capabilities == ["docs"]
    assert carol.note == "writing the README"
    assert carol.last_seen is not None
    assert carol.expires_at is not None
    assert carol.tasks == [first.task_id, second.task_id]
    assert by_id["dave"].tasks == []

    await bus.tasks.complete("carol", first.task_id, claim_1.lease.lease_token)
    carol_after = await agent_in_list(bus, "carol")
    assert carol_after is not None
    assert carol_after.tasks == [second.task_id]


async def test_a_heartbeat_extends_every_lease_the_agent_holds(bus: AgentBus) -> None:
    await bus.tasks.create("planner", title="one")
    await bus.tasks.create("planner", title="two")
    await bus.tasks.create("planner", title="someone else's")
    claim_1 = await bus.tasks.claim("erin", lease_seconds=60)
    claim_2 = await bus.tasks.claim("erin", lease_seconds=60)
    await bus.tasks.claim("frank", lease_seconds=60)
    assert claim_1.task is not None
    assert claim_1.lease is not None
    assert claim_2.task is not None
    assert claim_2.lease is not None

    beat = await bus.presence.heartbeat("erin", status="busy")
    extended = {lease.task_id: lease.expires_at for lease in beat.leases_extended}
    assert set(extended) == {claim_1.task.id, claim_2.task.id}
    # Same ISO format, so the strings order like the times.
    assert extended[claim_1.task.id] >= claim_1.lease.expires_at
    assert extended[claim_2.task.id] >= claim_2.lease.expires_at
    assert sorted(beat.agent.tasks) == sorted(extended)


async def test_an_agent_with_a_short_ttl_becomes_gone_via_the_reaper(bus: AgentBus) -> None:
    await bus.presence.heartbeat("stayer", ttl_seconds=60)
    joined = await bus.presence.heartbeat("ephemeral", status="busy", capabilities=["ops"], ttl_seconds=0.3)
    assert joined.joined

    with anyio.fail_after(5):  # first expired, then moved to the gone list by the reaper
        while True:
            if await agent_in_list(bus, "ephemeral") is None:
                break
            await anyio.sleep(0.05)

    gone = await agent_in_list(bus, "ephemeral", include_gone=True)
    assert gone is not None
    assert gone.alive is False
    assert gone.status == "gone"
    assert gone.capabilities == ["ops"]
    stayer = await agent_in_list(bus, "stayer", include_gone=True)
    assert stayer is not None
    assert stayer.alive

    back = await bus.presence.heartbeat("ephemeral", ttl_seconds=60)
    assert back.joined is True
    assert back.agent.capabilities == ["ops"]
    again = await agent_in_list(bus, "ephemeral")
    assert again is not None
    assert again.alive
    assert again.status == "idle"
    assert [a.agent for a in (await bus.presence.list_agents(include_gone=True)).agents].count(
        "ephemeral"
    ) == 1


async def test_list_agents_filters_by_capability(bus: AgentBus) -> None:
    await bus.presence.heartbeat("py-1", capabilities=["python"])
    await bus.presence.heartbeat("py-2", capabilities=["python", "review"])
    await bus.presence.heartbeat("rs-1", capabilities=["rust"])
    await bus.presence.heartbeat("nobody")

    python = await bus.presence.list_agents(capability="python")
    assert sorted(a.agent for a in python.agents) == ["py-1", "py-2"]
    review = await bus.presence.list_agents(capability="review")
    assert [a.agent for a in review.agents] == ["py-2"]
    assert (await bus.presence.list_agents(capability="go")).agents == []
    assert len((await bus.presence.list_agents()).agents) == 4


async def test_live_agents_counts_the_agents_alive_now(bus: AgentBus) -> None:
    for i, name in enumerate(("one", "two", "three"), start=1):
        beat = await bus.presence.heartbeat(name)
        assert beat.live_agents == i
    assert (await bus.presence.heartbeat("one")).live_agents == 3


@pytest.mark.parametrize(
    ("agent", "capabilities", "ttl", "named"),
    [
        pytest.param("bad agent", None, 60, "agent id", id="agent-with-space"),
        pytest.param("", None, 60, "agent id", id="empty-agent"),
        pytest.param("x" * 65, None, 60, "agent id", id="agent-too-long"),
        pytest.param("ok", ["a/b"], 60, "capability", id="capability-with-slash"),
        pytest.param("ok", None, 0, "ttl_seconds", id="zero-ttl"),
    ],
)
async def test_a_heartbeat_with_bad_arguments_is_refused_and_registers_nothing(
    bus: AgentBus, agent: str, capabilities: list[str] | None, ttl: float, named: str
) -> None:
    with pytest.raises(InvalidArgument, match=named):
        await bus.presence.heartbeat(agent, capabilities=capabilities, ttl_seconds=ttl)
    assert (await bus.presence.list_agents(include_gone=True)).agents == []


async def test_list_agents_with_a_bad_capability_is_invalid_argument(bus: AgentBus) -> None:
    with pytest.raises(InvalidArgument, match="capability"):
        await bus.presence.list_agents(capability="a/b")


async def test_more_calls_in_flight_than_the_pool_has_connections_wait_for_one(bus: AgentBus) -> None:
    agents = [f"crowd-{i}" for i in range(2 * MAX_CONNECTIONS)]
    joined: list[bool] = []

    async def beat(agent: str) -> None:
        joined.append((await bus.presence.heartbeat(agent)).joined)

    async with anyio.create_task_group() as group:
        for agent in agents:
            group.start_soon(beat, agent)
    assert joined == [True] * len(agents)
    assert {a.agent for a in (await bus.presence.list_agents()).agents} >= set(agents)
