"""Assigned tasks and progress reports through the core API, on both backends: an assigned task reaches
its assignee's claims alone; a holder reports how far it has come with `heartbeat(progress=...)`."""

from __future__ import annotations

from typing import cast

import anyio
import pytest
from helpers import WAIT_BOUND, ms_of, until_task_state, view_of, while_it_waits

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.errors import InvalidArgument, NotFound, WrongState

pytestmark = pytest.mark.anyio

BOSS = "coordinator"


async def assigned_queue(bus: AgentBus, agent: str) -> list[str]:
    return cast(list[str], await bus.redis.zrange(bus.store.keys.assigned(agent), 0, -1))  # decoded


# --- assignee --------------------------------------------------------------------------------------


async def test_an_assigned_task_reaches_its_assignee_alone(bus: AgentBus) -> None:
    created = await bus.tasks.create(BOSS, title="for bob", assignee="bob")  # bob is not live yet
    assert created.state == "ready"
    other = await bus.tasks.claim("alice")
    assert other.task is None and other.ready_elsewhere == {}, "another agent's claims never see it"
    with pytest.raises(WrongState) as refused:
        await bus.tasks.claim("alice", task_id=created.task_id)
    assert "assigned to bob" in refused.value.message and refused.value.hint
    assert await assigned_queue(bus, "bob") == [created.task_id], "the refusal changed nothing"

    got = await bus.tasks.claim("bob", capabilities=["unrelated"])
    assert got.task is not None and got.task.id == created.task_id
    assert await assigned_queue(bus, "bob") == []


async def test_work_assigned_to_an_agent_the_bus_does_not_know_says_so(bus: AgentBus) -> None:
    """A mistyped assignee would leave the work waiting for good: the creator is told, once."""
    await bus.presence.heartbeat("bob")
    known = await bus.tasks.create(BOSS, title="for bob", assignee="bob")
    assert known.notices == []
    typo = await bus.tasks.create(BOSS, title="for bbo", assignee="bbo", idempotency_key="k")
    assert len(typo.notices) == 1 and typo.notices[0].startswith("No agent bbo is known to the bus")
    assert (await bus.tasks.create(BOSS, title="for bbo", assignee="bbo", idempotency_key="k")).notices == []
    steps = [{"key": "a", "title": "a", "assignee": "bob"}, {"key": "b", "title": "b", "assignee": "carl"}]
    created = await bus.workflows.create(BOSS, title="mixed", tasks=steps)
    assert [n.split(" is ")[0] for n in created.notices] == ["No agent carl"]


async def test_assigned_work_comes_before_capability_work_of_the_same_priority(bus: AgentBus) -> None:
    shared = await bus.tasks.create(BOSS, title="anyone")
    first = await bus.tasks.create(BOSS, title="mine 1", assignee="bob")
    second = await bus.tasks.create(BOSS, title="mine 2", assignee="bob")
    urgent = await bus.tasks.create(BOSS, title="fire", priority="urgent")
    order = []
    for _ in range(4):
        claim = await bus.tasks.claim("bob")
        assert claim.task is not None
        order.append(claim.task.id)
    assert order == [urgent.task_id, first.task_id, second.task_id, shared.task_id]


async def test_an_assigned_task_goes_back_to_its_assignee_after_a_failure_or_a_lapsed_lease(
    bus: AgentBus,
) -> None:
    created = await bus.tasks.create(BOSS, title="retry me", assignee="bob", max_attempts=3)
    claim = await bus.tasks.claim("bob", lease_seconds=0.3)
    assert claim.lease is not None
    await until_task_state(bus, created.task_id, "ready")  # the reaper takes the lapsed lease back
    assert await assigned_queue(bus, "bob") == [created.task_id]
    assert (await bus.tasks.claim("alice")).task is None
    again = await bus.tasks.claim("bob")
    assert again.lease is not None
    failed = await bus.tasks.fail("bob", created.task_id, again.lease.lease_token, error="flaky")
    assert failed.state in ("delayed", "ready")
    with anyio.fail_after(WAIT_BOUND):
        while (third := await bus.tasks.claim("bob")).task is None:
            assert (await bus.tasks.claim("alice")).task is None
            await anyio.sleep(0.05)
    assert third.task.id == created.task_id and third.task.attempt == 3


async def test_cancelling_an_assigned_task_takes_it_out_of_the_assignees_queue(bus: AgentBus) -> None:
    created = await bus.tasks.create(BOSS, title="never mind", assignee="bob")
    await bus.control.cancel(BOSS, task_id=created.task_id, reason="done elsewhere")
    assert await assigned_queue(bus, "bob") == []
    assert (await bus.tasks.claim("bob")).task is None


async def test_the_assignees_waiting_claim_is_woken_by_a_task_assigned_to_it(bus: AgentBus) -> None:
    created: list[str] = []

    async def assign() -> None:
        created.append(
            (await bus.tasks.create(BOSS, title="yours", capability="build", assignee="bob")).task_id
        )

    claim = await while_it_waits(
        lambda: bus.tasks.claim("bob", capabilities=["review"], wait_seconds=30), assign
    )
    assert claim.task is not None and [claim.task.id] == created


async def test_workflow_tasks_take_an_assignee_shown_in_get_workflow_and_list_agents(bus: AgentBus) -> None:
    await bus.presence.heartbeat("bob")
    created = await bus.workflows.create(
        BOSS,
        title="assigned",
        tasks=[
            {"key": "a", "title": "A", "assignee": "bob"},
            {"key": "b", "title": "B", "assignee": "bob", "depends_on": ["a"]},
            {"key": "c", "title": "C"},
        ],
    )
    views = [await view_of(bus, created.workflow_id, created.task_ids[k]) for k in "abc"]
    assert [v.assignee for v in views] == ["bob", "bob", None]
    listed = await bus.presence.list_agents()
    assert next(a for a in listed.agents if a.agent == "bob").assigned == 1, "b is blocked, not waiting"
    assert (await bus.presence.heartbeat("bob")).agent.assigned == 1
    with pytest.raises(InvalidArgument, match="assignee"):
        await bus.workflows.create(BOSS, title="bad", tasks=[{"key": "a", "title": "A", "assignee": "b b"}])
    with pytest.raises(InvalidArgument, match="assignee"):
        await bus.tasks.create(BOSS, title="bad", assignee="b b")


# --- progress --------------------------------------------------------------------------------------


async def test_progress_on_a_held_task_is_shown_in_get_workflow_and_logged(bus: AgentBus) -> None:
    created = await bus.workflows.create(BOSS, title="long", tasks=[{"key": "x", "title": "X"}])
    task_id = created.task_ids["x"]
    claim = await bus.tasks.claim("worker", lease_seconds=60)
    assert claim.lease is not None
    beat = await bus.presence.heartbeat(
        "worker", progress={"task_id": task_id, "percent": 40, "message": "3 of 7 files"}
    )
    assert ms_of(beat.leases_extended[0].expires_at) >= ms_of(claim.lease.expires_at), "the lease is extended"
    view = await view_of(bus, created.workflow_id, task_id)
    assert view.progress is not None
    assert (view.progress.percent, view.progress.message) == (40, "3 of 7 files") and view.progress.at
    (event,) = (await bus.events.read(topics=["task.progress"], after="0")).events
    assert event.agent == "worker"
    assert event.data == {
        "task": task_id,
        "workflow": created.workflow_id,
        "percent": 40,
        "message": "3 of 7 files",
    }

    await bus.control.cancel(BOSS, task_id=task_id, reason="r")
    await bus.control.retry(BOSS, task_id, reason="r")
    await bus.tasks.claim("worker", task_id=task_id)
    assert (await view_of(bus, created.workflow_id, task_id)).progress is None, "cleared by a new claim"


async def test_progress_for_a_task_the_agent_does_not_hold_is_refused_and_nothing_changes(
    bus: AgentBus,
) -> None:
    created = await bus.workflows.create(BOSS, title="not yours", tasks=[{"key": "x", "title": "X"}])
    task_id = created.task_ids["x"]
    await bus.tasks.claim("holder", task_id=task_id)
    with pytest.raises(WrongState) as refused:
        await bus.presence.heartbeat("intruder", progress={"task_id": task_id, "percent": 99})
    assert "held by holder" in refused.value.message and refused.value.hint
    with pytest.raises(NotFound):
        await bus.presence.heartbeat("intruder", progress={"task_id": "t-404", "percent": 1})
    for bad in ({"task_id": task_id, "percent": 101}, {"task_id": task_id}, {"task_id": "x", "percent": 1}):
        with pytest.raises(InvalidArgument, match="progress"):
            await bus.presence.heartbeat("holder", progress=bad)
    assert (await view_of(bus, created.workflow_id, task_id)).progress is None
    assert (await bus.events.read(topics=["task.progress", "agent.joined"], after="0")).events == []
