"""Presence follows the work (calls renew it, held work keeps it, offline leaves), and every wait of an
agent ends early on news for it: a message delivered to it, or a lease or lock of its taken back."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest
from helpers import WAIT_BOUND, while_it_waits

from mcp_agentbus.context import Caller, Watch
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import AgentView
from mcp_agentbus.core.wakeups import STOPPED_FOR_LOSS, STOPPED_FOR_MESSAGE

pytestmark = pytest.mark.anyio

LONG_WAIT = 4  # seconds a waiting call asks for; news must end it well before (bounded below by QUICK)
QUICK = 2.5  # the bound on a wait that news ends


async def listed(bus: AgentBus, agent: str, *, include_gone: bool = False) -> AgentView | None:
    agents = (await bus.presence.list_agents(include_gone=include_gone)).agents
    return next((a for a in agents if a.agent == agent), None)


async def topics_about(bus: AgentBus, agent: str) -> list[str]:
    read = await bus.events.read(topics=["agent.*"], after="0", limit=200)
    return [e.topic for e in read.events if e.data.get("agent") == agent]


async def until_gone(bus: AgentBus, agent: str) -> None:
    with anyio.fail_after(WAIT_BOUND):
        while await listed(bus, agent) is not None:  # noqa: ASYNC110 - polling Redis, not a local flag
            await anyio.sleep(0.05)


# --- presence ------------------------------------------------------------------------------------


async def test_calls_made_for_an_agent_keep_it_alive_past_its_ttl(bus: AgentBus) -> None:
    await bus.presence.heartbeat("worker", ttl_seconds=0.5)
    # Working for three ttls without another heartbeat: each call is a sign of life.
    for _ in range(10):
        watch = Watch("worker")
        as_agent = bus.acting(Caller(watch))
        await as_agent.tasks.claim("worker")
        seen = await listed(bus, "worker")
        assert seen is not None and seen.alive, "reported gone while it was making calls"
        await anyio.sleep(0.15)
    assert "agent.gone" not in await topics_about(bus, "worker")
    await until_gone(bus, "worker")  # silent and holding nothing: gone as before
    assert await topics_about(bus, "worker") == ["agent.joined", "agent.gone"]


async def test_a_heartbeat_for_another_agent_still_renews_the_caller(bus: AgentBus) -> None:
    """A heartbeat sets its own agent's presence, which the call then need not renew; made for a
    different agent (a coordinator beating for a worker), it is the caller's sign of life as any call."""
    await bus.presence.heartbeat("coordinator", ttl_seconds=0.5)
    as_coordinator = bus.acting(Caller(Watch("coordinator")))
    for _ in range(10):  # three of its ttls, saying nothing for itself
        beat = await as_coordinator.presence.heartbeat("helper", ttl_seconds=60)
        assert beat.agent.agent == "helper" and beat.agent.alive
        seen = await listed(bus, "coordinator")
        assert seen is not None and seen.alive, "reported gone while it was making calls"
        await anyio.sleep(0.15)
    assert "agent.gone" not in await topics_about(bus, "coordinator")


async def test_a_heartbeat_sets_the_presence_its_ttl_says_even_made_for_itself(bus: AgentBus) -> None:
    """Its own heartbeat lowering the ttl is not stretched by the renewal every call makes."""
    await bus.presence.heartbeat("shortener", ttl_seconds=60)
    as_itself = bus.acting(Caller(Watch("shortener")))
    await as_itself.presence.heartbeat("shortener", ttl_seconds=0.3)
    await until_gone(bus, "shortener")
    assert await topics_about(bus, "shortener") == ["agent.joined", "agent.gone"]


async def test_a_silent_agent_holding_a_lease_or_a_lock_is_not_reported_gone(bus: AgentBus) -> None:
    await bus.tasks.create("boss", title="long work")
    claim = await bus.tasks.claim("holder", lease_seconds=60)
    assert claim.task is not None and claim.lease is not None
    lock = await bus.locks.acquire("holder", "src/app.py", ttl_seconds=60)
    await bus.presence.heartbeat("holder", ttl_seconds=0.3)  # from here on it says nothing
    await anyio.sleep(1.0)  # ten reaper sweeps past its ttl
    seen = await listed(bus, "holder")
    assert seen is not None and seen.alive, "a working agent was reported gone"

    await bus.tasks.complete("holder", claim.task.id, claim.lease.lease_token)
    await anyio.sleep(0.6)
    assert await listed(bus, "holder") is not None, "the lock it holds still keeps it"
    assert lock.lock_token is not None
    await bus.locks.release("holder", "src/app.py", lock.lock_token)
    await until_gone(bus, "holder")
    assert await topics_about(bus, "holder") == ["agent.joined", "agent.gone"]


async def test_a_heartbeat_after_a_lapse_says_the_agent_had_been_reported_gone(bus: AgentBus) -> None:
    first = await bus.presence.heartbeat("napper", ttl_seconds=0.3)
    assert first.notices == []
    await until_gone(bus, "napper")
    back = await bus.presence.heartbeat("napper")
    assert back.joined
    assert len(back.notices) == 1 and "reported gone at" in back.notices[0]
    again = await bus.presence.heartbeat("napper")
    assert again.notices == [], "said once, on the heartbeat that re-joins"


async def test_going_offline_leaves_at_once_and_keeps_what_it_holds(bus: AgentBus) -> None:
    await bus.presence.heartbeat("leaver", ttl_seconds=60)
    created = await bus.tasks.create("boss", title="half done")
    claim = await bus.tasks.claim("leaver")
    assert claim.task is not None and claim.lease is not None
    await bus.locks.acquire("leaver", "docs/", ttl_seconds=60)

    left = await bus.presence.heartbeat("leaver", status="offline")
    assert left.agent.alive is False and left.agent.status == "offline" and not left.joined
    assert left.agent.tasks == [created.task_id] and left.agent.locks == ["docs/"]
    assert left.leases_extended == [] and left.locks_extended == []
    assert len(left.notices) == 1
    assert f"task {created.task_id}" in left.notices[0] and "lock docs/" in left.notices[0]

    assert await listed(bus, "leaver") is None
    gone = await listed(bus, "leaver", include_gone=True)
    assert gone is not None and gone.status == "offline"
    assert await topics_about(bus, "leaver") == ["agent.joined", "agent.left"]
    # Not released: the lease still completes the task.
    done = await bus.tasks.complete("leaver", claim.task.id, claim.lease.lease_token)
    assert not done.already_completed

    back = await bus.presence.heartbeat("leaver")
    assert back.joined and back.notices == [], "coming back after leaving is no lapse"


async def test_going_offline_unregistered_is_no_error_and_says_nothing_is_held(bus: AgentBus) -> None:
    left = await bus.presence.heartbeat("stranger", status="offline")
    assert left.agent.alive is False
    assert left.notices == [
        "You left the bus (agent.left); others no longer see you as live. You hold no lease or lock."
    ]
    assert "agent.left" not in await topics_about(bus, "stranger")


async def test_an_agent_waiting_longer_than_its_ttl_is_not_reported_gone(bus: AgentBus) -> None:
    await bus.presence.heartbeat("patient", ttl_seconds=0.3)
    watch = Watch("patient")
    as_agent = bus.acting(Caller(watch))
    claim = await as_agent.tasks.claim("patient", wait_seconds=1.2)  # four ttls, holding nothing
    assert claim.task is None
    seen = await listed(bus, "patient")
    assert seen is not None and seen.alive, "reported gone while it waited in a call"
    assert "agent.gone" not in await topics_about(bus, "patient")


# --- waits end on news -----------------------------------------------------------------------------


@pytest.mark.parametrize("to", ["worker", "role:builder", "*"])
async def test_a_claim_wait_ends_when_a_message_arrives_for_the_agent(bus: AgentBus, to: str) -> None:
    await bus.presence.heartbeat("worker", capabilities=["builder"])
    claim = await while_it_waits(
        lambda: bus.tasks.claim("worker", wait_seconds=LONG_WAIT),
        lambda: bus.inbox.send("coordinator", to, "work is over"),
        QUICK,
    )
    assert claim.task is None and claim.reason == "interrupted"
    assert STOPPED_FOR_MESSAGE in claim.notices


async def test_a_claim_wait_ends_when_a_lease_of_the_agent_is_taken_back(bus: AgentBus) -> None:
    await bus.tasks.create("boss", title="first", capability="build")
    first = await bus.tasks.claim("worker", capabilities=["build"], lease_seconds=0.5)
    assert first.task is not None
    claim = await while_it_waits(
        lambda: bus.tasks.claim("worker", capabilities=["review"], wait_seconds=LONG_WAIT),
        lambda: anyio.lowlevel.checkpoint(),  # its first lease expires meanwhile: the reaper takes it back
        QUICK,
    )
    assert claim.task is None and claim.reason == "interrupted"
    assert STOPPED_FOR_LOSS in claim.notices


async def test_waits_of_other_agents_do_not_end_on_a_message_not_theirs(bus: AgentBus) -> None:
    got: list[Any] = []

    async def waiting() -> None:
        got.append(await bus.tasks.claim("worker", wait_seconds=3))  # far past the checks below

    with anyio.fail_after(WAIT_BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiting)
            await anyio.sleep(0.3)
            await bus.inbox.send("coordinator", "someone-else", "not for you")
            await anyio.sleep(0.2)
            assert not got, "a message for another agent ended the wait"
    claim = got[0]
    assert claim.task is None and claim.reason != "interrupted"
    assert STOPPED_FOR_MESSAGE not in claim.notices


async def test_a_lock_wait_ends_when_a_message_arrives_for_the_agent(bus: AgentBus) -> None:
    await bus.locks.acquire("holder", "src/", ttl_seconds=60)
    got = await while_it_waits(
        lambda: bus.locks.acquire("waiter", "src/app.py", wait_seconds=LONG_WAIT),
        lambda: bus.inbox.send("coordinator", "waiter", "stop, plans changed"),
        QUICK,
    )
    assert got.acquired is False and got.holder == "holder"
    assert STOPPED_FOR_MESSAGE in got.notices
    assert await bus.redis.zcard(bus.store.keys.lock_queue("src/app.py")) == 0, "it left the queue"


async def test_an_event_wait_for_an_agent_ends_when_a_message_arrives_for_it(bus: AgentBus) -> None:
    got = await while_it_waits(
        lambda: bus.events.read(topics=["build.*"], wait_seconds=LONG_WAIT, agent="watcher"),
        lambda: bus.inbox.send("coordinator", "watcher", "look at this"),
        QUICK,
    )
    assert got.events == [] and STOPPED_FOR_MESSAGE in got.notices


async def test_an_inbox_wait_ends_when_a_lock_of_the_agent_is_taken_back(bus: AgentBus) -> None:
    await bus.locks.acquire("reader", "notes.md", ttl_seconds=0.4)
    got = await while_it_waits(
        lambda: bus.inbox.read("reader", wait_seconds=LONG_WAIT),
        lambda: anyio.lowlevel.checkpoint(),  # the lock expires meanwhile
        QUICK,
    )
    assert got.messages == [] and STOPPED_FOR_LOSS in got.notices


async def test_an_inbox_wait_still_returns_the_message_it_waited_for(bus: AgentBus) -> None:
    got = await while_it_waits(
        lambda: bus.inbox.read("reader", wait_seconds=LONG_WAIT),
        lambda: bus.inbox.send("coordinator", "reader", "here it is"),
        QUICK,
    )
    assert [m.body for m in got.messages] == ["here it is"]
    assert STOPPED_FOR_MESSAGE not in got.notices


async def test_a_state_wait_ends_when_a_message_arrives_for_the_agent(bus: AgentBus) -> None:
    got = await while_it_waits(
        lambda: bus.state.get("plan/current", after_version=0, wait_seconds=LONG_WAIT, agent="planner"),
        lambda: bus.inbox.send("coordinator", "planner", "the plan changed in chat"),
        QUICK,
    )
    assert got.entries == [] and STOPPED_FOR_MESSAGE in got.notices
