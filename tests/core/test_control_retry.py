"""retry_task through the core API (`bus.control.retry`), on both backends: a dead or cancelled task runs
again with fresh attempts, what was cancelled because of it comes back, its workflow runs again."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import until_task_state, view_of

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.errors import NotFound, WrongState

pytestmark = pytest.mark.anyio

BOSS = "coordinator"


async def kill(bus: AgentBus, task_id: str, agent: str = "worker") -> int:
    """Claim `task_id` and fail it for good; the fence of that claim."""
    claim = await bus.tasks.claim(agent, task_id=task_id)
    assert claim.lease is not None
    failed = await bus.tasks.fail(agent, task_id, claim.lease.lease_token, error="broken", retry=False)
    assert failed.state == "dead"
    return claim.lease.fence


async def finish(bus: AgentBus, task_id: str, result: Any, agent: str = "worker") -> None:
    claim = await bus.tasks.claim(agent, task_id=task_id)
    assert claim.lease is not None
    await bus.tasks.complete(agent, task_id, claim.lease.lease_token, result=result)


async def chain(bus: AgentBus) -> tuple[str, dict[str, str]]:
    created = await bus.workflows.create(
        BOSS,
        title="pipeline",
        tasks=[
            {"key": "fetch", "title": "fetch", "max_attempts": 2},
            {"key": "parse", "title": "parse", "depends_on": ["fetch"]},
            {"key": "report", "title": "report", "depends_on": ["parse"]},
        ],
    )
    return created.workflow_id, created.task_ids


async def test_a_dead_task_runs_again_with_fresh_attempts_and_brings_back_its_dependents(
    bus: AgentBus,
) -> None:
    wf, ids = await chain(bus)
    fence = await kill(bus, ids["fetch"])
    before = (await bus.workflows.get(wf)).workflow
    assert before is not None and before.status == "failed"

    got = await bus.control.retry(BOSS, ids["fetch"], reason="the server is back")
    assert (got.task_id, got.state) == (ids["fetch"], "ready")
    assert got.restored == [ids["parse"], ids["report"]]
    workflow = (await bus.workflows.get(wf)).workflow
    assert workflow is not None and workflow.status == "running" and workflow.finished_at is None
    assert workflow.progress.model_dump() == {
        "total": 3, "blocked": 2, "ready": 1, "delayed": 0, "claimed": 0, "done": 0, "dead": 0, "cancelled": 0
    }  # fmt: skip
    fetch = await view_of(bus, wf, ids["fetch"])
    assert (fetch.attempts, fetch.max_attempts) == (0, 2)
    keys = bus.store.keys
    assert await bus.redis.zscore(keys.dead, ids["fetch"]) is None
    for key in (keys.workflow(wf), *(keys.task(t) for t in ids.values())):
        assert await bus.redis.pttl(key) == -1, f"{key} no longer expires"
    assert await bus.redis.hget(keys.counters, "open") == "3"

    again = await bus.tasks.claim("worker", task_id=ids["fetch"])
    assert again.task is not None and again.lease is not None
    assert again.task.attempt == 1 and again.lease.fence > fence
    await bus.tasks.complete("worker", ids["fetch"], again.lease.lease_token, result="page")
    await finish(bus, ids["parse"], "parsed")
    await finish(bus, ids["report"], "done")
    done = (await bus.workflows.get(wf)).workflow
    assert done is not None and done.status == "done"
    (retried,) = (await bus.events.read(topics=["task.retried"], after="0")).events
    assert retried.agent == BOSS and retried.data["reason"] == "the server is back"


async def test_only_tasks_cancelled_because_of_it_are_restored(bus: AgentBus) -> None:
    root = await bus.tasks.create(BOSS, title="root")
    child = await bus.tasks.create(BOSS, title="child", depends_on=[root.task_id])
    grandchild = await bus.tasks.create(BOSS, title="grandchild", depends_on=[child.task_id])
    other = await bus.tasks.create(BOSS, title="other")
    bystander = await bus.tasks.create(BOSS, title="bystander", depends_on=[other.task_id])
    await bus.control.cancel(BOSS, task_id=root.task_id, reason="paused")
    await bus.control.cancel(BOSS, task_id=other.task_id, reason="for good")

    got = await bus.control.retry(BOSS, root.task_id, reason="resume")
    assert got.restored == [child.task_id, grandchild.task_id]
    states = [
        await bus.redis.hget(bus.store.keys.task(t.task_id), "state") for t in (child, grandchild, bystander)
    ]
    assert states == ["blocked", "blocked", "cancelled"]
    restored = (await bus.events.read(topics=["task.restored"], after="0")).events
    assert [e.data["task"] for e in restored] == [child.task_id, grandchild.task_id]


async def test_a_restored_task_waits_only_for_what_is_not_done_and_gets_every_input(bus: AgentBus) -> None:
    left = await bus.tasks.create(BOSS, title="left")
    right = await bus.tasks.create(BOSS, title="right")
    join = await bus.tasks.create(BOSS, title="join", depends_on=[left.task_id, right.task_id])
    await kill(bus, left.task_id)
    await finish(bus, right.task_id, {"side": "right"})  # while join is cancelled

    got = await bus.control.retry(BOSS, left.task_id, reason="fixed")
    assert got.restored == [join.task_id]
    assert await bus.redis.hget(bus.store.keys.task(join.task_id), "pending") == "1"
    await finish(bus, left.task_id, {"side": "left"})
    claim = await bus.tasks.claim("worker", task_id=join.task_id)
    assert claim.task is not None
    assert claim.task.inputs == {left.task_id: {"side": "left"}, right.task_id: {"side": "right"}}


async def test_a_retried_task_waits_blocked_while_a_dependency_is_not_done(bus: AgentBus) -> None:
    slow = await bus.tasks.create(BOSS, title="slow")
    after = await bus.tasks.create(BOSS, title="after", depends_on=[slow.task_id])
    got = await bus.control.cancel(BOSS, task_id=after.task_id, reason="not yet")
    assert got.cancelled == [after.task_id]
    retried = await bus.control.retry(BOSS, after.task_id, reason="yes after all")
    assert retried.state == "blocked"
    await finish(bus, slow.task_id, 1)
    assert await bus.redis.hget(bus.store.keys.task(after.task_id), "state") == "ready"


@pytest.mark.parametrize("state", ["ready", "claimed", "done"])
async def test_a_task_that_is_not_dead_or_cancelled_is_wrong_state(bus: AgentBus, state: str) -> None:
    created = await bus.tasks.create(BOSS, title=state)
    if state == "claimed":
        await bus.tasks.claim("worker", task_id=created.task_id)
    if state == "done":
        await finish(bus, created.task_id, 1)
    with pytest.raises(WrongState) as refused:
        await bus.control.retry(BOSS, created.task_id, reason="again")
    assert f"is {state}" in refused.value.message and refused.value.hint
    assert await bus.redis.hget(bus.store.keys.task(created.task_id), "state") == state


async def test_retrying_below_a_dead_dependency_names_the_task_to_retry_first(bus: AgentBus) -> None:
    wf, ids = await chain(bus)
    await kill(bus, ids["fetch"])
    with pytest.raises(WrongState) as refused:
        await bus.control.retry(BOSS, ids["parse"], reason="again")
    assert ids["fetch"] in refused.value.message and f"retry_task {ids['fetch']}" in (
        refused.value.hint or ""
    )
    assert (await view_of(bus, wf, ids["parse"])).state == "cancelled"
    with pytest.raises(NotFound):
        await bus.control.retry(BOSS, "t-404", reason="again")


async def test_a_retry_with_the_same_key_replays_the_first_answer(bus: AgentBus) -> None:
    created = await bus.tasks.create(BOSS, title="once", max_attempts=1)
    await kill(bus, created.task_id)
    first = await bus.control.retry(BOSS, created.task_id, reason="r", idempotency_key="retry-1")
    replay = await bus.control.retry(BOSS, created.task_id, reason="r", idempotency_key="retry-1")
    assert replay.duplicate and (replay.task_id, replay.state) == (first.task_id, first.state)
    assert len((await bus.events.read(topics=["task.retried"], after="0")).events) == 1


async def test_retrying_the_first_task_of_a_cancelled_workflow_brings_it_back_whole(bus: AgentBus) -> None:
    """A workflow's tasks are cancelled upstream first, so those blocked on a cancelled one are
    cancelled because of it, and come back with it."""
    wf, ids = await chain(bus)
    await bus.control.cancel(BOSS, workflow_id=wf, reason="hold on")
    got = await bus.control.retry(BOSS, ids["fetch"], reason="go on")
    assert got.state == "ready" and got.restored == [ids["parse"], ids["report"]]
    workflow = (await bus.workflows.get(wf)).workflow
    assert workflow is not None and workflow.status == "running" and workflow.progress.cancelled == 0


@pytest.mark.parametrize("listed", ["upstream first", "downstream first"])
async def test_a_long_cancelled_workflow_comes_back_whole(bus: AgentBus, listed: str) -> None:
    """A chain of 150 (one call cancels at most 100 by cascade) is cancelled whole by the call, each link
    because of the head, in whichever order its steps were listed; a retry of the head brings every link
    back, the reaper finishing what its budget left."""
    steps: list[dict[str, Any]] = [{"key": "s0", "title": "head"}]
    steps += [{"key": f"s{n}", "title": f"link {n}", "depends_on": [f"s{n - 1}"]} for n in range(1, 150)]
    if listed == "downstream first":
        steps.reverse()
    created = await bus.workflows.create(BOSS, title="long", tasks=steps)
    head, last = created.task_ids["s0"], created.task_ids["s149"]

    got = await bus.control.cancel(BOSS, workflow_id=created.workflow_id, reason="hold on")
    assert len(got.cancelled) == 150 and not got.notices  # nothing left for the reaper to cancel
    causes = [await bus.redis.hget(bus.store.keys.task(t), "cause") for t in created.task_ids.values()]
    assert causes.count(head) == 149

    restored = await bus.control.retry(BOSS, head, reason="go on")
    assert restored.state == "ready" and len(restored.restored) < 149
    await until_task_state(bus, last, "blocked")
    workflow = (await bus.workflows.get(created.workflow_id)).workflow
    assert workflow is not None and workflow.status == "running"
    assert (workflow.progress.ready, workflow.progress.blocked, workflow.progress.cancelled) == (1, 149, 0)


async def test_a_restore_past_the_budget_is_finished_by_the_reaper(bus: AgentBus) -> None:
    head = await bus.tasks.create(BOSS, title="head")
    last = head.task_id
    for n in range(150):  # a chain longer than one call's budget of 100
        last = (await bus.tasks.create(BOSS, title=f"link {n}", depends_on=[last])).task_id
    await bus.control.cancel(BOSS, task_id=head.task_id, reason="stop")
    await until_task_state(bus, last, "cancelled")
    got = await bus.control.retry(BOSS, head.task_id, reason="go")
    assert len(got.restored) < 150 and got.notices and "within seconds" in got.notices[0]
    await until_task_state(bus, last, "blocked")
    assert await bus.redis.hget(bus.store.keys.counters, "open") == "151"


async def test_a_restored_task_of_another_workflow_makes_that_workflow_run_again(bus: AgentBus) -> None:
    first, ids = await chain(bus)
    other = await bus.workflows.create(BOSS, title="downstream", tasks=[{"key": "seed", "title": "seed"}])
    follower = await bus.tasks.create(
        BOSS, title="uses the fetch", depends_on=[ids["fetch"]], workflow_id=other.workflow_id
    )
    await finish(bus, other.task_ids["seed"], 0)
    await kill(bus, ids["fetch"])
    failed = (await bus.workflows.get(other.workflow_id)).workflow
    assert failed is not None and failed.status == "failed"

    got = await bus.control.retry(BOSS, ids["fetch"], reason="fixed")
    assert follower.task_id in got.restored
    for wf in (first, other.workflow_id):
        workflow = (await bus.workflows.get(wf)).workflow
        assert workflow is not None and workflow.status == "running", wf
    assert await bus.redis.pttl(bus.store.keys.task(other.task_ids["seed"])) == -1
    reopened = (await bus.events.read(topics=["workflow.reopened"], after="0")).events
    assert {e.data["workflow"] for e in reopened} == {first, other.workflow_id}
