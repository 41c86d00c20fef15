"""A task in detail (core/task_detail.py, the dashboard's task panel): every attempt with its holder, kept
in `attempts:<id>` by the scripts that claim and end leases, bounded, and expiring with the task; the
task's recent events from a bounded look back at the log."""

from __future__ import annotations

import anyio
import pytest
from helpers import wait_for_state

from mcp_agentbus.core import task_detail
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import ClaimResult
from mcp_agentbus.errors import InvalidArgument, NotFound

pytestmark = pytest.mark.anyio

SHORT_LEASE = 0.3
LONG_ERROR = "disk full " * 29 + "!" * 9 + "é" * 50  # 299 ASCII bytes, then 2-byte characters
TIMEOUT = 20  # bound on one test; each finishes far sooner


def lease_of(claim: ClaimResult) -> tuple[str, str]:
    assert claim.task is not None and claim.lease is not None
    return claim.task.id, claim.lease.lease_token


async def test_two_attempts_after_an_expired_lease_show_both_holders_and_how_each_ended(
    bus: AgentBus,
) -> None:
    with anyio.fail_after(TIMEOUT):
        created = await bus.workflows.create(
            "planner", title="leases", tasks=[{"key": "job", "title": "the job", "max_attempts": 3}]
        )
        task_id, _ = lease_of(await bus.tasks.claim("slow", lease_seconds=SHORT_LEASE))
        while_held = await task_detail.read(bus.store, task_id)
        await wait_for_state(bus, created.workflow_id, task_id, "ready")
        _, token = lease_of(await bus.tasks.claim("rescuer"))
        await bus.tasks.complete("rescuer", task_id, token, result={"ok": True})
        detail = await task_detail.read(bus.store, task_id)

    [held] = while_held.attempt_history
    assert (held.holder, held.attempt, held.outcome, held.ended_at) == ("slow", 1, None, None)
    assert while_held.task.state == "claimed" and while_held.task.lease_expires_at is not None
    first, second = detail.attempt_history
    assert (first.holder, first.attempt, first.fence, first.outcome) == ("slow", 1, 1, "expired")
    assert first.error == "lease expired on attempt 1 (slow stopped without completing)"
    assert (second.holder, second.attempt, second.fence, second.outcome) == ("rescuer", 2, 2, "done")
    assert first.claimed_at is not None and first.ended_at is not None and first.claimed_at < first.ended_at
    assert second.claimed_at is not None and first.ended_at <= second.claimed_at
    assert detail.task.state == "done" and detail.task.result == {"ok": True}
    assert detail.workflow_id == created.workflow_id
    topics = [e.topic for e in detail.events]  # newest first
    assert topics[:4] == ["task.completed", "task.claimed", "task.reclaimed", "task.claimed"]
    assert all(e.data["task"] == task_id for e in detail.events)


async def test_a_failed_and_a_cancelled_attempt_keep_their_errors(bus: AgentBus) -> None:
    with anyio.fail_after(TIMEOUT):
        created = await bus.tasks.create("planner", title="flaky", max_attempts=3)
        task_id, token = lease_of(await bus.tasks.claim("w1"))
        await bus.tasks.fail("w1", task_id, token, error=LONG_ERROR)
        claim = await bus.tasks.claim("w2", wait_seconds=5)
        assert lease_of(claim)[0] == created.task_id
        await bus.control.cancel("lead", task_id=task_id, reason="not needed any more")
        detail = await task_detail.read(bus.store, task_id)

    failed, cancelled = detail.attempt_history
    assert (failed.holder, failed.outcome) == ("w1", "failed")
    assert failed.error is not None and LONG_ERROR.startswith(failed.error)
    assert len(failed.error.encode()) == 299  # cut before the 2-byte 'é' whose first byte is the 300th
    assert (cancelled.holder, cancelled.outcome, cancelled.error) == (
        "w2",
        "cancelled",
        "not needed any more",
    )


async def test_a_claim_handed_back_shows_as_a_released_attempt_before_the_next_claim(bus: AgentBus) -> None:
    with anyio.fail_after(TIMEOUT):
        created = await bus.tasks.create("planner", title="raced")
        with anyio.CancelScope() as scope:
            scope.cancel()  # the claimer goes away before it hears of its claim: release_task hands it back
            await bus.tasks.claim("gone")
        task_id, _ = lease_of(await bus.tasks.claim("w2"))
        detail = await task_detail.read(bus.store, task_id)

    assert scope.cancelled_caught and task_id == created.task_id
    released, held = detail.attempt_history
    assert (released.holder, released.attempt, released.fence, released.outcome) == ("gone", 1, 1, "released")
    assert released.ended_at is not None and released.error is None
    assert (held.holder, held.attempt, held.fence, held.outcome) == ("w2", 1, 2, None)


async def test_the_record_keeps_only_the_newest_twenty_attempts(bus: AgentBus) -> None:
    with anyio.fail_after(TIMEOUT):
        created = await bus.tasks.create("planner", title="again and again", max_attempts=1)
        for n in range(23):  # each run of the task (retry_task) counts its attempts from 1 again
            lease_of(await bus.tasks.claim(f"w{n}"))
            await bus.control.cancel("lead", task_id=created.task_id, reason=f"stop {n}")
            await bus.control.retry("lead", created.task_id, reason="once more")
        detail = await task_detail.read(bus.store, created.task_id)
        stored = await bus.redis.llen(bus.store.keys.attempts(created.task_id))

    assert stored == 20
    assert [a.holder for a in detail.attempt_history] == [f"w{n}" for n in range(3, 23)]
    assert {(a.attempt, a.outcome) for a in detail.attempt_history} == {(1, "cancelled")}


async def test_the_record_expires_with_its_task_and_stops_expiring_when_it_is_retried(bus: AgentBus) -> None:
    keys = bus.store.keys
    with anyio.fail_after(TIMEOUT):
        created = await bus.workflows.create("planner", title="short", tasks=[{"key": "a", "title": "A"}])
        task_id = created.task_ids["a"]
        lease_of(await bus.tasks.claim("w1"))
        assert await bus.redis.pttl(keys.attempts(task_id)) == -1  # running: kept
        await bus.control.cancel("lead", workflow_id=created.workflow_id, reason="wrong plan")
        task_ttl, attempts_ttl = (
            await bus.redis.pttl(keys.task(task_id)),
            await bus.redis.pttl(keys.attempts(task_id)),
        )
        await bus.control.retry("lead", task_id, reason="right plan after all")
        retried = await bus.redis.pttl(keys.task(task_id)), await bus.redis.pttl(keys.attempts(task_id))

    retention_ms = bus.settings.retention_seconds * 1000
    assert 0 < task_ttl <= retention_ms and 0 < attempts_ttl <= retention_ms
    assert abs(task_ttl - attempts_ttl) < 1000
    assert retried == (-1, -1)


async def test_the_events_of_a_task_come_from_a_bounded_look_back(
    bus: AgentBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(task_detail, "EVENTS_SCANNED", 30)
    with anyio.fail_after(TIMEOUT):
        created = await bus.tasks.create("planner", title="old news")
        recent = await task_detail.read(bus.store, created.task_id)
        for n in range(30):
            await bus.events.publish("chatty", "chatter.note", {"n": n, "task": "t-0"})
        later = await task_detail.read(bus.store, created.task_id)

    assert [e.topic for e in recent.events] == ["task.created"]
    assert later.events == [] and later.events_scanned == 30


async def test_an_unknown_task_is_not_found_and_a_malformed_id_is_refused(bus: AgentBus) -> None:
    with pytest.raises(NotFound, match="t-999999"):
        await task_detail.read(bus.store, "t-999999")
    with pytest.raises(InvalidArgument, match="task_id"):
        await task_detail.read(bus.store, "not an id")
