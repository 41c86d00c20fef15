"""Lease expiry: the reaper takes expired leases back, and their old holders lose them for good."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from helpers import view_of, wait_for_state

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import ClaimResult
from mcp_agentbus.errors import LeaseLost
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio

SHORT_LEASE = 0.3


async def workflow(bus: AgentBus, *tasks: dict[str, Any]) -> tuple[str, dict[str, str]]:
    created = await bus.workflows.create("planner", title="leases", tasks=list(tasks))
    return created.workflow_id, created.task_ids


def held(claim: ClaimResult) -> tuple[str, str, int]:
    """(task id, lease token, fence) of a successful claim."""
    assert claim.task is not None
    assert claim.lease is not None
    return claim.task.id, claim.lease.lease_token, claim.lease.fence


async def test_an_expired_lease_is_reclaimed_and_its_old_holder_gets_lease_lost(bus: AgentBus) -> None:
    wf, ids = await workflow(bus, {"key": "job", "title": "job", "max_attempts": 3})
    task_id, old_token, old_fence = held(await bus.tasks.claim("slow", lease_seconds=SHORT_LEASE))
    assert task_id == ids["job"]
    assert old_fence == 1

    back = await wait_for_state(bus, wf, task_id, "ready")
    assert back.attempts == 1
    assert back.assignee is None
    assert back.error is not None
    assert "lease expired" in back.error
    assert "slow" in back.error

    with pytest.raises(LeaseLost):
        await bus.tasks.complete("slow", task_id, old_token, result="too late")
    with pytest.raises(LeaseLost):
        await bus.tasks.fail("slow", task_id, old_token, error="gave up")
    after = await view_of(bus, wf, task_id)
    assert after.state == "ready"
    assert after.result is None
    assert after.attempts == 1

    again = await bus.tasks.claim("rescuer")
    new_id, new_token, new_fence = held(again)
    assert new_id == task_id
    assert again.task is not None
    assert again.task.attempt == 2
    assert new_fence > old_fence
    with pytest.raises(LeaseLost):  # still lost while someone else holds it
        await bus.tasks.complete("slow", task_id, old_token, result="too late")

    done = await bus.tasks.complete("rescuer", task_id, new_token, result="rescued")
    assert not done.already_completed
    assert done.workflow_status == "done"
    final = await view_of(bus, wf, task_id)
    assert final.state == "done"
    assert final.result == "rescued"
    assert final.assignee == "rescuer"
    assert final.attempts == 2
    with pytest.raises(LeaseLost):  # and after it is done
        await bus.tasks.complete("slow", task_id, old_token, result="too late")
    assert (await view_of(bus, wf, task_id)).result == "rescued"


async def test_a_waiting_claimer_gets_a_reclaimed_task(bus: AgentBus) -> None:
    created = await bus.tasks.create("planner", title="abandoned")
    task_id, _, old_fence = held(await bus.tasks.claim("crashed", lease_seconds=SHORT_LEASE))

    with anyio.fail_after(4):  # the wait allows 5 s; the reaper hands it over well before
        claim = await bus.tasks.claim("rescuer", wait_seconds=5)
    new_id, _, new_fence = held(claim)
    assert new_id == task_id == created.task_id
    assert claim.task is not None
    assert claim.task.attempt == 2
    assert new_fence == old_fence + 1


async def test_heartbeats_before_expiry_keep_the_lease(bus: AgentBus) -> None:
    wf, ids = await workflow(bus, {"key": "long", "title": "long job"})
    lease = 0.6
    task_id, token, _ = held(await bus.tasks.claim("steady", lease_seconds=lease))

    # Keep beating for well over two lease lengths.
    until = anyio.current_time() + 2.5 * lease
    while anyio.current_time() < until:
        beat = await bus.presence.heartbeat("steady", status="busy")
        assert [extended.task_id for extended in beat.leases_extended] == [task_id]
        await anyio.sleep(0.1)

    view = await view_of(bus, wf, task_id)
    assert view.state == "claimed"
    assert view.assignee == "steady"
    assert view.attempts == 1
    assert (await bus.tasks.claim("thief")).task is None
    done = await bus.tasks.complete("steady", task_id, token, result="finished")
    assert not done.already_completed
    assert (await view_of(bus, wf, ids["long"])).result == "finished"


async def test_a_holder_whose_lease_was_taken_back_cannot_extend_it(bus: AgentBus) -> None:
    wf, ids = await workflow(bus, {"key": "job", "title": "job"})
    task_id, _, _ = held(await bus.tasks.claim("sleepy", lease_seconds=SHORT_LEASE))
    await wait_for_state(bus, wf, task_id, "ready")

    beat = await bus.presence.heartbeat("sleepy")
    assert beat.leases_extended == []
    assert beat.agent.tasks == []
    assert (await view_of(bus, wf, ids["job"])).state == "ready"


async def test_a_lease_expiring_on_the_last_attempt_kills_the_task_and_cancels_dependents(
    bus: AgentBus,
) -> None:
    wf, _ = await workflow(
        bus,
        {"key": "fragile", "title": "fragile", "max_attempts": 2},
        {"key": "next", "title": "next", "depends_on": ["fragile"]},
    )
    task_id, _, _ = held(await bus.tasks.claim("first", lease_seconds=SHORT_LEASE))
    await wait_for_state(bus, wf, task_id, "ready")

    claim = await bus.tasks.claim("second", lease_seconds=SHORT_LEASE)
    _, token, _ = held(claim)
    assert claim.task is not None
    assert claim.task.attempt == 2
    dead = await wait_for_state(bus, wf, task_id, "dead")
    assert dead.attempts == 2
    assert dead.error is not None
    assert "lease expired on attempt 2" in dead.error

    with pytest.raises(LeaseLost):
        await bus.tasks.complete("second", task_id, token, result="late")
    got = await bus.workflows.get(wf)
    assert got.workflow is not None
    assert got.workflow.status == "failed"
    nxt = next(t for t in got.workflow.tasks if t.key == "next")
    assert nxt.state == "cancelled"
    assert nxt.error is not None
    assert task_id in nxt.error
    assert (await bus.tasks.claim("third")).task is None


async def test_the_reaper_promotes_a_due_delayed_task_without_any_claim(bus: AgentBus) -> None:
    wf, _ = await workflow(bus, {"key": "anchor", "title": "anchor"})
    delayed = await bus.tasks.create("planner", title="later", workflow_id=wf, delay_seconds=0.3)
    assert delayed.state == "delayed"
    assert (await view_of(bus, wf, delayed.task_id)).due_at is not None

    ready = await wait_for_state(bus, wf, delayed.task_id, "ready")
    assert ready.due_at is None
    assert ready.attempts == 0


async def test_a_sweep_takes_back_expired_leases_and_only_one_reaper_sweeps_at_a_time(
    settings: Settings,
) -> None:
    async with AgentBus.open(settings, reaper=False) as one, AgentBus.open(settings, reaper=False) as two:
        first = await one.reaper.sweep()
        assert first is not None
        assert first.reclaimed == 0
        assert await two.reaper.sweep() is None  # `one` holds the reaper role

        await one.tasks.create("planner", title="job")
        task_id, token, _ = held(await one.tasks.claim("holder", lease_seconds=SHORT_LEASE))
        with anyio.fail_after(5):
            while True:
                swept = await one.reaper.sweep()
                assert swept is not None  # `one` keeps the role
                if swept.reclaimed:
                    break
                await anyio.sleep(0.05)
        assert swept.reclaimed == 1

        with pytest.raises(LeaseLost):
            await one.tasks.complete("holder", task_id, token)
        claim = await two.tasks.claim("other")
        assert held(claim)[0] == task_id
