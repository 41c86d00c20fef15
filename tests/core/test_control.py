"""cancel_task through the core API (`bus.control.cancel`), on both backends: a holder loses its lease at
once, queues and counters stay exact, dependents follow, a workflow ends `cancelled`, all bounded."""

from __future__ import annotations

from typing import Any, cast

import pytest
from helpers import until_task_state, view_of, while_it_waits

from mcp_agentbus.context import Caller, Watch
from mcp_agentbus.core import notices
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.control import MAX_REASON, NOTICE_REASON
from mcp_agentbus.core.wakeups import STOPPED_FOR_LOSS
from mcp_agentbus.errors import InvalidArgument, LeaseLost, NotFound

pytestmark = pytest.mark.anyio

BOSS = "coordinator"


async def events_of(bus: AgentBus, topic: str) -> list[Any]:
    return (await bus.events.read(topics=[topic], after="0", limit=500)).events


async def ready_count(bus: AgentBus, cap: str) -> tuple[int, str | None]:
    """(tasks in the capability's ready queue, its ready counter) — the counter is absent when empty."""
    keys = bus.store.keys
    queue = await bus.redis.zcard(keys.ready(cap))
    return queue, cast(str | None, await bus.redis.hget(keys.counters, f"ready:{cap}"))  # decoded


async def test_cancelling_a_claimed_task_takes_its_lease_back_and_tells_the_holder_why(bus: AgentBus) -> None:
    created = await bus.tasks.create(BOSS, title="long job")
    claim = await bus.tasks.claim("worker", task_id=created.task_id)
    assert claim.lease is not None

    got = await bus.control.cancel(BOSS, task_id=created.task_id, reason="plan changed")
    assert got.cancelled == [created.task_id] and got.already_final == []

    watch = Watch("worker")
    as_agent = bus.acting(Caller(watch))
    await as_agent.events.publish("worker", "probe.call")
    told = notices.lines(watch)
    assert any(created.task_id in line and "cancelled (plan changed)" in line for line in told), told
    with pytest.raises(LeaseLost) as late:
        await bus.tasks.complete("worker", created.task_id, claim.lease.lease_token, result="too late")
    assert "cancelled: plan changed" in late.value.message
    assert "stop work" in (late.value.hint or "")
    with pytest.raises(LeaseLost):
        await bus.tasks.fail("worker", created.task_id, claim.lease.lease_token, error="late")
    assert await bus.redis.scard(bus.store.keys.held("worker")) == 0
    assert await bus.redis.zscore(bus.store.keys.leases, created.task_id) is None
    (event,) = await events_of(bus, "task.cancelled")
    assert event.agent == BOSS and event.data == {
        "task": created.task_id,
        "workflow": "",
        "reason": "plan changed",
    }


async def test_a_waiting_call_of_the_holder_ends_when_its_task_is_cancelled(bus: AgentBus) -> None:
    created = await bus.tasks.create(BOSS, title="job", capability="build")
    assert (await bus.tasks.claim("worker", task_id=created.task_id)).task is not None
    claim = await while_it_waits(
        lambda: bus.tasks.claim("worker", capabilities=["review"], wait_seconds=30),
        lambda: bus.control.cancel(BOSS, task_id=created.task_id, reason="not needed"),
    )
    assert claim.task is None and claim.reason == "interrupted"
    assert STOPPED_FOR_LOSS in claim.notices


async def test_ready_delayed_and_blocked_tasks_leave_their_queues_with_exact_counters(bus: AgentBus) -> None:
    ready = await bus.tasks.create(BOSS, title="ready", capability="ops")
    other = await bus.tasks.create(BOSS, title="stays", capability="ops")
    delayed = await bus.tasks.create(BOSS, title="later", capability="ops", delay_seconds=600)
    blocked = await bus.tasks.create(BOSS, title="after", capability="ops", depends_on=[other.task_id])
    assert await ready_count(bus, "ops") == (2, "2")

    for task in (ready, delayed, blocked):
        got = await bus.control.cancel(BOSS, task_id=task.task_id, reason="scrap")
        assert got.cancelled == [task.task_id]
    assert await ready_count(bus, "ops") == (1, "1")
    assert await bus.redis.zcard(bus.store.keys.delayed) == 0
    await bus.control.cancel(BOSS, task_id=other.task_id, reason="scrap")
    assert await ready_count(bus, "ops") == (0, None)
    nothing = await bus.tasks.claim("worker", capabilities=["ops"])
    assert nothing.task is None and nothing.delayed == 0 and nothing.ready_elsewhere == {}
    assert await bus.redis.hget(bus.store.keys.counters, "open") == "0"


async def test_dependents_are_cancelled_transitively_with_the_reason_one_event_each(bus: AgentBus) -> None:
    created = await bus.workflows.create(
        BOSS,
        title="chain",
        tasks=[
            {"key": "a", "title": "A"},
            {"key": "b", "title": "B", "depends_on": ["a"]},
            {"key": "c", "title": "C", "depends_on": ["b"]},
        ],
    )
    a, b, c = (created.task_ids[k] for k in "abc")
    got = await bus.control.cancel(BOSS, task_id=a, reason="wrong approach")
    assert got.cancelled == [a, b, c]
    for task in (b, c):
        view = await view_of(bus, created.workflow_id, task)
        assert view.state == "cancelled"
        assert view.error == f"dependency {a} was cancelled: wrong approach"
    events = await events_of(bus, "task.cancelled")
    assert [e.data["task"] for e in events] == [a, b, c]
    assert all(e.agent == BOSS for e in events)
    workflow = (await bus.workflows.get(created.workflow_id)).workflow
    assert workflow is not None and workflow.progress.cancelled == 3 and workflow.status == "failed"


async def test_cancelling_a_workflow_cancels_what_is_not_final_and_marks_it_cancelled(bus: AgentBus) -> None:
    created = await bus.workflows.create(
        BOSS,
        title="release",
        tasks=[
            {"key": "build", "title": "build"},
            {"key": "docs", "title": "docs"},
            {"key": "ship", "title": "ship", "depends_on": ["build", "docs"]},
        ],
    )
    ids = created.task_ids
    build = await bus.tasks.claim("builder", task_id=ids["build"])
    assert build.lease is not None
    await bus.tasks.complete("builder", ids["build"], build.lease.lease_token, result="ok")

    got = await bus.control.cancel(BOSS, workflow_id=created.workflow_id, reason="release postponed")
    assert sorted(got.cancelled) == sorted([ids["docs"], ids["ship"]])
    assert got.already_final == [ids["build"]]
    workflow = (await bus.workflows.get(created.workflow_id)).workflow
    assert workflow is not None and workflow.status == "cancelled" and workflow.finished_at is not None
    assert (workflow.progress.done, workflow.progress.cancelled) == (1, 2)
    (finished,) = await events_of(bus, "workflow.finished")
    assert finished.data["status"] == "cancelled" and finished.data["workflow"] == created.workflow_id
    keys = bus.store.keys
    for key in (keys.workflow(created.workflow_id), *(keys.task(t) for t in ids.values())):
        assert await bus.redis.pttl(key) > 0, f"{key} expires like any finished workflow's record"


async def test_cancelling_again_changes_nothing_and_a_key_replays_the_first_answer(bus: AgentBus) -> None:
    created = await bus.tasks.create(BOSS, title="once")
    first = await bus.control.cancel(BOSS, task_id=created.task_id, reason="r", idempotency_key="k1")
    again = await bus.control.cancel(BOSS, task_id=created.task_id, reason="r")
    assert (again.cancelled, again.already_final) == ([], [created.task_id])
    replay = await bus.control.cancel(BOSS, task_id=created.task_id, reason="r", idempotency_key="k1")
    assert replay.duplicate and replay.cancelled == first.cancelled == [created.task_id]
    assert len(await events_of(bus, "task.cancelled")) == 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"reason": "r"}, "exactly one"),
        ({"task_id": "t-1", "workflow_id": "wf-1", "reason": "r"}, "exactly one"),
        ({"task_id": "x1", "reason": "r"}, "task_id"),
        ({"workflow_id": "w", "reason": "r"}, "workflow_id"),
        ({"task_id": "t-1", "reason": "  "}, "reason"),
        ({"task_id": "t-1", "reason": "r" * (MAX_REASON + 1)}, "reason"),
        ({"task_id": "t-1", "reason": "r", "idempotency_key": "a b"}, "idempotency_key"),
    ],
)
async def test_bad_cancel_arguments_are_refused_and_nothing_changes(
    bus: AgentBus, args: dict[str, Any], fragment: str
) -> None:
    created = await bus.tasks.create(BOSS, title="kept")
    with pytest.raises(InvalidArgument) as refused:
        await bus.control.cancel(BOSS, **args)
    assert fragment in refused.value.message
    assert (await bus.tasks.claim("worker", task_id=created.task_id)).task is not None


async def test_cancelling_what_does_not_exist_is_not_found(bus: AgentBus) -> None:
    with pytest.raises(NotFound, match="t-404"):
        await bus.control.cancel(BOSS, task_id="t-404", reason="r")
    with pytest.raises(NotFound, match="wf-404"):
        await bus.control.cancel(BOSS, workflow_id="wf-404", reason="r")


async def test_a_cascade_past_the_budget_is_finished_by_the_reaper(bus: AgentBus) -> None:
    head = await bus.tasks.create(BOSS, title="head")
    last = head.task_id
    for n in range(150):  # a chain longer than one call's budget of 100
        last = (await bus.tasks.create(BOSS, title=f"link {n}", depends_on=[last])).task_id
    got = await bus.control.cancel(BOSS, task_id=head.task_id, reason="stop")
    assert len(got.cancelled) < 151 and got.notices and "within seconds" in got.notices[0]
    await until_task_state(bus, last, "cancelled")
    assert await bus.redis.hget(bus.store.keys.counters, "open") == "0"


async def test_a_long_reason_is_shortened_in_the_holders_notice_and_whole_in_its_lease_lost(
    bus: AgentBus,
) -> None:
    created = await bus.tasks.create(BOSS, title="job")
    claim = await bus.tasks.claim("worker", task_id=created.task_id)
    assert claim.lease is not None
    reason = "é" * MAX_REASON  # several bytes a character: the notice must cut it whole
    await bus.control.cancel(BOSS, task_id=created.task_id, reason=reason)
    watch = Watch("worker")
    as_agent = bus.acting(Caller(watch))
    await as_agent.events.publish("worker", "probe.call")
    (told,) = notices.lines(watch)
    assert "é" * (NOTICE_REASON - 1) + "…)" in told and "é" * NOTICE_REASON not in told
    with pytest.raises(LeaseLost) as late:
        await bus.tasks.complete("worker", created.task_id, claim.lease.lease_token)
    assert reason in late.value.message
