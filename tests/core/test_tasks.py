"""Tasks through the core API: create, claim (with waits), complete and fail, on both backends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest
from helpers import ALSO_ON_CLUSTER, view_of, wait_for_state

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import ClaimResult
from mcp_agentbus.errors import InvalidArgument, LeaseLost, NotFound, PayloadTooLarge, WrongState
from mcp_agentbus.settings import Settings

pytestmark = [pytest.mark.anyio, ALSO_ON_CLUSTER]

AGENT = "worker-1"


async def single_task_workflow(bus: AgentBus, **task: Any) -> tuple[str, str]:
    """A workflow of one task (key "only"), so its state can be read with get_workflow."""
    created = await bus.workflows.create(
        AGENT, title="one task", tasks=[{"key": "only", "title": "t", **task}]
    )
    return created.workflow_id, created.task_ids["only"]


# --- concurrency -----------------------------------------------------------------------------------


async def test_sixteen_clients_racing_for_1000_tasks_claim_each_exactly_once(settings: Settings) -> None:
    total, clients = 1000, 16
    async with AgentBus.open(settings) as creator:
        created = set()
        for i in range(total):
            created.add((await creator.tasks.create("planner", title=f"job {i}", capability="bulk")).task_id)
    assert len(created) == total

    claimed: list[str] = []
    completions: list[bool] = []

    async def worker(bus: AgentBus, name: str) -> None:
        while True:
            claim = await bus.tasks.claim(name, capabilities=["bulk"])
            if claim.task is None:
                return
            assert claim.lease is not None
            assert claim.task.attempt == 1
            assert claim.lease.fence == 1
            claimed.append(claim.task.id)
            done = await bus.tasks.complete(name, claim.task.id, claim.lease.lease_token, result={"by": name})
            completions.append(done.state == "done" and not done.already_completed)

    async with AsyncExitStack() as stack:
        buses = [await stack.enter_async_context(AgentBus.open(settings)) for _ in range(clients)]
        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for i, bus in enumerate(buses):
                    tg.start_soon(worker, bus, f"racer-{i}")
        leftover = await buses[0].tasks.claim("checker", capabilities=["bulk"])

    assert len(claimed) == total
    assert len(set(claimed)) == total, "a task was claimed twice"
    assert set(claimed) == created
    assert len(completions) == total
    assert all(completions)
    assert leftover.task is None
    assert leftover.ready_elsewhere == {}
    assert leftover.delayed == 0


# --- priorities, capabilities, specific claims --------------------------------------------------------


async def test_urgent_beats_high_beats_normal_beats_low_and_fifo_within_a_priority(bus: AgentBus) -> None:
    for title, priority in [
        ("low", "low"),
        ("normal-1", "normal"),
        ("high", "high"),
        ("normal-2", "normal"),
        ("urgent", "urgent"),
        ("normal-3", "normal"),
    ]:
        await bus.tasks.create("planner", title=title, priority=priority)  # type: ignore[arg-type]

    order = []
    while (claim := await bus.tasks.claim(AGENT)).task is not None:
        order.append(claim.task.title)
    assert order == ["urgent", "high", "normal-1", "normal-2", "normal-3", "low"]


async def test_claim_defaults_to_the_agents_registered_capabilities_plus_any(bus: AgentBus) -> None:
    await bus.presence.heartbeat("py-worker", capabilities=["python"])
    rust = await bus.tasks.create("planner", title="rust job", capability="rust", priority="urgent")
    python = await bus.tasks.create("planner", title="python job", capability="python")
    anyone = await bus.tasks.create("planner", title="any job", priority="low")

    first = await bus.tasks.claim("py-worker")
    second = await bus.tasks.claim("py-worker")
    third = await bus.tasks.claim("py-worker")

    assert first.task is not None
    assert first.task.id == python.task_id
    assert first.task.capability == "python"
    assert second.task is not None
    assert second.task.id == anyone.task_id
    assert third.task is None
    assert set(third.capabilities) == {"python", "any"}
    assert third.ready_elsewhere == {"rust": 1}
    # An agent with no registered capabilities only sees 'any' tasks by default.
    assert (await bus.tasks.claim("newcomer")).task is None
    explicit = await bus.tasks.claim("py-worker", capabilities=["rust"])
    assert explicit.task is not None
    assert explicit.task.id == rust.task_id


async def test_explicit_capabilities_replace_the_default_ones(bus: AgentBus) -> None:
    await bus.tasks.create("planner", title="generic")
    docs = await bus.tasks.create("planner", title="docs job", capability="docs")

    claim = await bus.tasks.claim(AGENT, capabilities=["docs"])
    assert claim.task is not None
    assert claim.task.id == docs.task_id
    empty = await bus.tasks.claim(AGENT, capabilities=["docs"])
    assert empty.task is None
    assert empty.capabilities == ["docs"]
    assert empty.ready_elsewhere == {"any": 1}


async def test_claim_by_task_id_takes_that_specific_ready_task(bus: AgentBus) -> None:
    await bus.tasks.create("planner", title="first", priority="urgent")
    wanted = await bus.tasks.create("planner", title="second", capability="special", priority="low")

    claim = await bus.tasks.claim(AGENT, task_id=wanted.task_id)
    assert claim.task is not None
    assert claim.task.id == wanted.task_id
    assert claim.task.title == "second"
    assert claim.lease is not None
    assert claim.lease.fence == 1
    # The other task is still there for the next claimer.
    other = await bus.tasks.claim(AGENT)
    assert other.task is not None
    assert other.task.title == "first"


async def test_claiming_a_task_that_is_not_ready_is_wrong_state(bus: AgentBus) -> None:
    taken = await bus.tasks.create("planner", title="taken")
    await bus.tasks.claim(AGENT, task_id=taken.task_id)
    blocked = await bus.tasks.create("planner", title="blocked", depends_on=[taken.task_id])
    delayed = await bus.tasks.create("planner", title="later", delay_seconds=60)
    assert blocked.state == "blocked"
    assert delayed.state == "delayed"

    for task_id, state in [
        (taken.task_id, "claimed"),
        (blocked.task_id, "blocked"),
        (delayed.task_id, "delayed"),
    ]:
        with pytest.raises(WrongState, match=state):
            await bus.tasks.claim("other", task_id=task_id)


async def test_claiming_an_unknown_task_is_not_found(bus: AgentBus) -> None:
    with pytest.raises(NotFound, match="t-999"):
        await bus.tasks.claim(AGENT, task_id="t-999")


async def test_claim_on_an_empty_queue_says_why_with_depths_elsewhere_and_next_due(bus: AgentBus) -> None:
    empty = await bus.tasks.claim(AGENT)
    assert empty.task is None
    assert empty.lease is None
    assert empty.reason
    assert empty.ready_elsewhere == {}
    assert empty.delayed == 0
    assert empty.next_due_at is None

    await bus.tasks.create("planner", title="gpu job", capability="gpu")
    await bus.tasks.create("planner", title="gpu job 2", capability="gpu")
    await bus.tasks.create("planner", title="later", delay_seconds=60)
    empty = await bus.tasks.claim(AGENT)
    assert empty.task is None
    assert empty.capabilities == ["any"]
    assert empty.ready_elsewhere == {"gpu": 2}
    assert empty.delayed == 1
    assert empty.next_due_at is not None


# --- waiting ------------------------------------------------------------------------------------------


async def test_waiting_claim_wakes_when_another_client_creates_a_task(
    bus: AgentBus, settings: Settings
) -> None:
    result: list[ClaimResult] = []

    async def claimer() -> None:
        result.append(await bus.tasks.claim(AGENT, wait_seconds=settings.max_wait_seconds))

    async with AgentBus.open(settings) as other:
        # The wait would last max_wait_seconds (5 s); it must end well before that.
        with anyio.fail_after(settings.max_wait_seconds * 0.6):
            async with anyio.create_task_group() as tg:
                tg.start_soon(claimer)
                await anyio.sleep(0.2)
                created = await other.tasks.create("planner", title="fresh work")

    assert result[0].task is not None
    assert result[0].task.id == created.task_id
    assert result[0].notices == []


async def test_waiting_for_one_capability_ignores_tasks_of_others(bus: AgentBus, settings: Settings) -> None:
    result: list[ClaimResult] = []

    async def claimer() -> None:
        result.append(await bus.tasks.claim(AGENT, capabilities=["review"], wait_seconds=4))

    async with AgentBus.open(settings) as other:
        with anyio.fail_after(3):
            async with anyio.create_task_group() as tg:
                tg.start_soon(claimer)
                await anyio.sleep(0.1)
                await other.tasks.create("planner", title="not for a reviewer", capability="build")
                await anyio.sleep(0.1)
                review = await other.tasks.create("planner", title="review me", capability="review")

    assert result[0].task is not None
    assert result[0].task.id == review.task_id


async def test_a_wait_above_the_cap_that_finds_a_task_at_once_says_nothing_of_the_cap(bus: AgentBus) -> None:
    await bus.tasks.create("planner", title="ready now")
    claim = await bus.tasks.claim(AGENT, wait_seconds=600)
    assert claim.task is not None
    assert not any("cap" in notice for notice in claim.notices), claim.notices


async def test_an_empty_wait_above_the_cap_ends_at_the_cap(settings: Settings) -> None:
    capped = settings.model_copy(update={"max_wait_seconds": 0.3})
    async with AgentBus.open(capped) as bus:
        with anyio.fail_after(3):  # the asked-for 60 s would blow this bound
            claim = await bus.tasks.claim(AGENT, wait_seconds=60)
    assert claim.task is None
    assert len(claim.notices) == 1
    assert "0.3" in claim.notices[0]


async def test_a_long_wait_reports_progress(bus: AgentBus) -> None:
    calls: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        calls.append((done, total, message))

    with anyio.fail_after(5):
        claim = await bus.tasks.claim(AGENT, wait_seconds=2.5, on_progress=on_progress)
    assert claim.task is None
    assert len(calls) >= 2
    assert all(total == 2.5 for _, total, _ in calls)
    assert all("waiting" in (message or "") for _, _, message in calls)
    waited = [done for done, _, _ in calls]
    assert waited == sorted(waited)


async def test_negative_wait_is_invalid_argument(bus: AgentBus) -> None:
    with pytest.raises(InvalidArgument, match="wait_seconds"):
        await bus.tasks.claim(AGENT, wait_seconds=-1)


# --- delays -------------------------------------------------------------------------------------------


async def test_a_delayed_task_is_claimable_only_once_it_is_due(bus: AgentBus) -> None:
    created = await bus.tasks.create("planner", title="soon", delay_seconds=0.3)
    assert created.state == "delayed"

    early = await bus.tasks.claim(AGENT)
    assert early.task is None
    assert early.delayed == 1
    assert early.next_due_at is not None

    with anyio.fail_after(3):
        later = await bus.tasks.claim(AGENT, wait_seconds=3)
    assert later.task is not None
    assert later.task.id == created.task_id
    assert later.task.attempt == 1


async def test_negative_delay_is_invalid_argument(bus: AgentBus) -> None:
    with pytest.raises(InvalidArgument, match="delay_seconds"):
        await bus.tasks.create("planner", title="past", delay_seconds=-1)


# --- dependencies -------------------------------------------------------------------------------------


async def test_create_task_depending_on_an_unknown_task_is_invalid_argument(bus: AgentBus) -> None:
    with pytest.raises(InvalidArgument, match="t-404"):
        await bus.tasks.create("planner", title="orphan", depends_on=["t-404"])
    assert (await bus.tasks.claim(AGENT)).task is None


async def test_create_task_depending_on_a_dead_task_is_wrong_state(bus: AgentBus) -> None:
    doomed = await bus.tasks.create("planner", title="doomed", max_attempts=1)
    claim = await bus.tasks.claim(AGENT)
    assert claim.lease is not None
    await bus.tasks.fail(AGENT, doomed.task_id, claim.lease.lease_token, error="broken")

    with pytest.raises(WrongState, match=doomed.task_id):
        await bus.tasks.create("planner", title="never", depends_on=[doomed.task_id])
    assert (await bus.tasks.claim(AGENT)).task is None


async def test_a_dependent_task_stays_blocked_until_its_dependency_is_done(bus: AgentBus) -> None:
    first = await bus.tasks.create("planner", title="first")
    second = await bus.tasks.create("planner", title="second", depends_on=[first.task_id])
    assert second.state == "blocked"

    claim = await bus.tasks.claim(AGENT)
    assert claim.task is not None
    assert claim.task.id == first.task_id
    assert claim.lease is not None
    assert (await bus.tasks.claim("other")).task is None  # second is still blocked
    with pytest.raises(WrongState):
        await bus.tasks.claim("other", task_id=second.task_id)

    done = await bus.tasks.complete(AGENT, first.task_id, claim.lease.lease_token, result={"n": 1})
    assert done.unblocked == [second.task_id]
    assert done.workflow_id is None

    follow = await bus.tasks.claim("other")
    assert follow.task is not None
    assert follow.task.id == second.task_id
    assert follow.task.inputs == {first.task_id: {"n": 1}}  # keyed by id when the task has no key


async def test_depending_on_a_done_task_is_ready_at_once(bus: AgentBus) -> None:
    first = await bus.tasks.create("planner", title="first")
    claim = await bus.tasks.claim(AGENT)
    assert claim.lease is not None
    await bus.tasks.complete(AGENT, first.task_id, claim.lease.lease_token, result="out")

    second = await bus.tasks.create("planner", title="second", depends_on=[first.task_id])
    assert second.state == "ready"
    follow = await bus.tasks.claim(AGENT)
    assert follow.task is not None
    assert follow.task.inputs == {first.task_id: "out"}


async def test_create_task_in_an_unknown_workflow_is_not_found(bus: AgentBus) -> None:
    with pytest.raises(NotFound, match="wf-77"):
        await bus.tasks.create("planner", title="lost", workflow_id="wf-77")
    assert (await bus.tasks.claim(AGENT)).task is None


async def test_create_task_can_join_a_running_workflow(bus: AgentBus) -> None:
    wf, only = await single_task_workflow(bus)
    extra = await bus.tasks.create("planner", title="extra", workflow_id=wf, depends_on=[only])
    assert extra.state == "blocked"
    got = await bus.workflows.get(wf)
    assert got.workflow is not None
    assert got.workflow.progress.total == 2
    assert [t.id for t in got.workflow.tasks] == [only, extra.task_id]
    assert got.workflow.tasks[1].depends_on == ["only"]


# --- idempotency --------------------------------------------------------------------------------------


async def test_create_task_with_the_same_idempotency_key_returns_the_same_task_once(bus: AgentBus) -> None:
    first = await bus.tasks.create("planner", title="once", idempotency_key="job-1")
    again = await bus.tasks.create("planner", title="once", idempotency_key="job-1")
    assert again.task_id == first.task_id
    assert not first.duplicate
    assert again.duplicate

    claim = await bus.tasks.claim(AGENT)
    assert claim.task is not None
    assert claim.task.id == first.task_id
    assert (await bus.tasks.claim(AGENT)).task is None  # only one task exists


async def test_idempotency_keys_of_different_agents_do_not_meet(bus: AgentBus) -> None:
    mine = await bus.tasks.create("planner-a", title="a", idempotency_key="1")
    theirs = await bus.tasks.create("planner-b", title="b", idempotency_key="1")
    assert mine.task_id != theirs.task_id
    assert not theirs.duplicate


async def test_completing_twice_with_the_same_token_is_idempotent(bus: AgentBus) -> None:
    wf, task_id = await single_task_workflow(bus)
    claim = await bus.tasks.claim(AGENT)
    assert claim.lease is not None

    first = await bus.tasks.complete(AGENT, task_id, claim.lease.lease_token, result={"v": 1}, summary="done")
    again = await bus.tasks.complete(AGENT, task_id, claim.lease.lease_token, result={"v": 2}, summary="redo")

    assert not first.already_completed
    assert again.already_completed
    assert again.state == "done"
    assert again.workflow_status == "done"
    view = await view_of(bus, wf, task_id)
    assert view.state == "done"
    assert view.result == {"v": 1}
    assert view.summary == "done"


async def test_completing_with_a_wrong_token_is_lease_lost_and_records_nothing(bus: AgentBus) -> None:
    wf, task_id = await single_task_workflow(bus)
    claim = await bus.tasks.claim(AGENT)
    assert claim.lease is not None

    with pytest.raises(LeaseLost):
        await bus.tasks.complete(AGENT, task_id, "not-the-token", result="forged")
    with pytest.raises(LeaseLost):
        await bus.tasks.fail(AGENT, task_id, "not-the-token", error="forged")
    view = await view_of(bus, wf, task_id)
    assert view.state == "claimed"
    assert view.result is None
    assert view.error is None


async def test_completing_or_failing_an_unknown_task_is_not_found(bus: AgentBus) -> None:
    with pytest.raises(NotFound):
        await bus.tasks.complete(AGENT, "t-12345", "token")
    with pytest.raises(NotFound):
        await bus.tasks.fail(AGENT, "t-12345", "token", error="x")


async def test_failing_twice_with_the_same_token_is_idempotent(bus: AgentBus) -> None:
    wf, task_id = await single_task_workflow(bus, max_attempts=3)
    claim = await bus.tasks.claim(AGENT)
    assert claim.lease is not None

    first = await bus.tasks.fail(AGENT, task_id, claim.lease.lease_token, error="flaky")
    again = await bus.tasks.fail(AGENT, task_id, claim.lease.lease_token, error="flaky")
    assert not first.already_failed
    assert again.already_failed
    assert first.attempts == again.attempts == 1
    assert again.state in ("delayed", "ready")
    assert (await view_of(bus, wf, task_id)).attempts == 1

    retry = await bus.tasks.claim(AGENT, wait_seconds=3)
    assert retry.lease is not None
    assert retry.task is not None
    assert retry.task.attempt == 2
    dead = await bus.tasks.fail(AGENT, task_id, retry.lease.lease_token, error="fatal", retry=False)
    dead_again = await bus.tasks.fail(AGENT, task_id, retry.lease.lease_token, error="fatal", retry=False)
    assert dead.state == dead_again.state == "dead"
    assert dead_again.already_failed
    view = await view_of(bus, wf, task_id)
    assert view.state == "dead"
    assert view.error == "fatal"


async def test_repeating_a_fail_after_the_task_was_claimed_again_still_reports_already_failed(
    bus: AgentBus,
) -> None:
    await bus.tasks.create("planner", title="flaky")
    claim = await bus.tasks.claim(AGENT)
    assert claim.task is not None
    assert claim.lease is not None
    await bus.tasks.fail(AGENT, claim.task.id, claim.lease.lease_token, error="flaky")
    retry = await bus.tasks.claim("other", wait_seconds=3)
    assert retry.task is not None

    again = await bus.tasks.fail(AGENT, claim.task.id, claim.lease.lease_token, error="flaky")
    assert again.already_failed


# --- retries and death --------------------------------------------------------------------------------


async def test_a_task_failed_max_attempts_times_goes_delayed_ready_then_dead_and_cancels_dependents(
    bus: AgentBus,
) -> None:
    created = await bus.workflows.create(
        "planner",
        title="fragile",
        tasks=[
            {"key": "flaky", "title": "flaky", "max_attempts": 3},
            {"key": "after", "title": "after", "depends_on": ["flaky"]},
            {"key": "last", "title": "last", "depends_on": ["after"]},
        ],
    )
    wf, ids = created.workflow_id, created.task_ids
    flaky = ids["flaky"]

    for attempt in (1, 2):
        claim = await bus.tasks.claim(AGENT, task_id=flaky)
        assert claim.task is not None
        assert claim.lease is not None
        assert claim.task.attempt == attempt
        failed = await bus.tasks.fail(AGENT, flaky, claim.lease.lease_token, error=f"boom {attempt}")
        assert failed.state == "delayed"
        assert failed.retry_at is not None
        assert failed.attempts == attempt
        assert failed.max_attempts == 3
        assert failed.cancelled == []
        view = await view_of(bus, wf, flaky)
        assert view.state in ("delayed", "ready")  # the backoff is 25-100 ms
        assert view.error == f"boom {attempt}"
        ready = await wait_for_state(bus, wf, flaky, "ready")
        assert ready.attempts == attempt

    last = await bus.tasks.claim(AGENT, wait_seconds=3)
    assert last.task is not None
    assert last.lease is not None
    assert last.task.id == flaky
    assert last.task.attempt == 3
    dead = await bus.tasks.fail(AGENT, flaky, last.lease.lease_token, error="boom 3")
    assert dead.state == "dead"
    assert dead.retry_at is None
    assert dead.attempts == 3
    assert dead.cancelled == [ids["after"], ids["last"]]

    got = await bus.workflows.get(wf)
    assert got.workflow is not None
    assert got.workflow.status == "failed"
    assert got.workflow.progress.dead == 1
    assert got.workflow.progress.cancelled == 2
    states = {t.key: t for t in got.workflow.tasks}
    assert states["flaky"].state == "dead"
    assert states["flaky"].error == "boom 3"
    for key in ("after", "last"):
        assert states[key].state == "cancelled"
        error = states[key].error
        assert error is not None
        assert flaky in error
    assert (await bus.tasks.claim(AGENT)).task is None


async def test_fail_without_retry_is_dead_at_once(bus: AgentBus) -> None:
    wf, task_id = await single_task_workflow(bus, max_attempts=5)
    claim = await bus.tasks.claim(AGENT)
    assert claim.lease is not None

    failed = await bus.tasks.fail(
        AGENT, task_id, claim.lease.lease_token, error="cannot be done", retry=False
    )
    assert failed.state == "dead"
    assert failed.retry_at is None
    assert failed.attempts == 1
    view = await view_of(bus, wf, task_id)
    assert view.state == "dead"
    assert view.error == "cannot be done"
    assert (await bus.workflows.get(wf)).workflow.status == "failed"  # type: ignore[union-attr]
    assert (await bus.tasks.claim(AGENT)).task is None


async def test_a_failed_lease_can_no_longer_complete(bus: AgentBus) -> None:
    wf, task_id = await single_task_workflow(bus)
    claim = await bus.tasks.claim(AGENT)
    assert claim.lease is not None
    await bus.tasks.fail(AGENT, task_id, claim.lease.lease_token, error="oops")
    with pytest.raises(LeaseLost):
        await bus.tasks.complete(AGENT, task_id, claim.lease.lease_token, result="late")
    assert (await view_of(bus, wf, task_id)).result is None


# --- validation ---------------------------------------------------------------------------------------

Call = Callable[[AgentBus], Awaitable[object]]


@pytest.mark.parametrize(
    ("call", "named"),
    [
        pytest.param(lambda b: b.tasks.create("bad agent", title="t"), "agent id", id="create-agent-space"),
        pytest.param(lambda b: b.tasks.claim("bad agent"), "agent id", id="claim-agent-space"),
        pytest.param(lambda b: b.tasks.complete("bad agent", "t-1", "tok"), "agent id", id="complete-agent"),
        pytest.param(
            lambda b: b.tasks.fail("bad agent", "t-1", "tok", error="e"), "agent id", id="fail-agent"
        ),
        pytest.param(lambda b: b.tasks.claim(AGENT, task_id="x"), "task_id", id="claim-task-x"),
        pytest.param(lambda b: b.tasks.complete(AGENT, "x", "tok"), "task_id", id="complete-task-x"),
        pytest.param(lambda b: b.tasks.fail(AGENT, "x", "tok", error="e"), "task_id", id="fail-task-x"),
        pytest.param(
            lambda b: b.tasks.create(AGENT, title="t", capability="a/b"), "capability", id="create-cap"
        ),
        pytest.param(lambda b: b.tasks.claim(AGENT, capabilities=["a/b"]), "capability", id="claim-cap"),
        pytest.param(lambda b: b.tasks.create(AGENT, title="t", depends_on=["x"]), "depends_on", id="dep-x"),
        pytest.param(lambda b: b.tasks.create(AGENT, title="t", workflow_id="x"), "workflow_id", id="wf-x"),
        pytest.param(
            lambda b: b.tasks.create(AGENT, title="t", max_attempts=0), "max_attempts", id="attempts-0"
        ),
        pytest.param(lambda b: b.tasks.claim(AGENT, lease_seconds=-1), "lease_seconds", id="lease-negative"),
    ],
)
async def test_bad_identifiers_and_arguments_are_refused_before_anything_is_written(
    bus: AgentBus, call: Call, named: str
) -> None:
    with pytest.raises(InvalidArgument, match=named):
        await call(bus)
    empty = await bus.tasks.claim(AGENT)
    assert empty.task is None
    assert empty.delayed == 0
    assert empty.ready_elsewhere == {}


async def test_a_payload_over_64_kib_is_payload_too_large(bus: AgentBus) -> None:
    with pytest.raises(PayloadTooLarge, match="payload"):
        await bus.tasks.create(AGENT, title="huge", payload="x" * 65_536)
    assert (await bus.tasks.claim(AGENT)).task is None

    at_limit = "x" * (65_536 - 2)  # two quotes make it exactly 64 KiB of JSON
    await bus.tasks.create(AGENT, title="big", payload=at_limit)
    claim = await bus.tasks.claim(AGENT)
    assert claim.task is not None
    assert claim.lease is not None
    assert claim.task.payload == at_limit

    with pytest.raises(PayloadTooLarge, match="result"):
        await bus.tasks.complete(AGENT, claim.task.id, claim.lease.lease_token, result=["y" * 70_000])
    done = await bus.tasks.complete(AGENT, claim.task.id, claim.lease.lease_token, result="small")
    assert not done.already_completed  # the refused result did not complete the task


async def test_an_unknown_priority_is_invalid_argument(bus: AgentBus) -> None:
    with pytest.raises(InvalidArgument, match="priority"):
        await bus.tasks.create(AGENT, title="t", priority="critical")  # type: ignore[arg-type]


async def test_a_zero_lease_is_invalid_argument(bus: AgentBus) -> None:
    await bus.tasks.create(AGENT, title="t")
    with pytest.raises(InvalidArgument, match="lease_seconds"):
        await bus.tasks.claim(AGENT, lease_seconds=0)


async def test_an_idempotency_key_with_spaces_is_invalid_argument(bus: AgentBus) -> None:
    with pytest.raises(InvalidArgument, match="idempotency"):
        await bus.tasks.create(AGENT, title="t", idempotency_key="has spaces\nand a newline")
