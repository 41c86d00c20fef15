"""The charts' numbers: completions, failures and deaths counted per minute by the scripts that end an
attempt, the ready queues sampled once a minute by the reaper, and both kept to the last hour."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import anyio
import pytest
from helpers import ALSO_ON_CLUSTER

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import ClaimResult
from mcp_agentbus.core.stats import MINUTE_MS, MINUTES, last_hour
from mcp_agentbus.settings import Settings

pytestmark = [pytest.mark.anyio, ALSO_ON_CLUSTER]

T = TypeVar("T")


@pytest.fixture
async def quiet(settings: Settings) -> AsyncIterator[AgentBus]:
    """A bus whose reaper sweeps only when the test says (so the test knows when the minute's sample
    is taken)."""
    async with AgentBus.open(settings, reaper=False) as bus:
        yield bus


def lease(claim: ClaimResult) -> tuple[str, str]:
    assert claim.task is not None and claim.lease is not None
    return claim.task.id, claim.lease.lease_token


async def in_one_minute(bus: AgentBus, step: Callable[[], Awaitable[T]]) -> tuple[int, T]:
    """Run `step` so that it starts and ends in the same minute of Redis time (once more if a minute
    began meanwhile: a step of milliseconds cannot straddle two); that minute and its result."""
    for _ in range(2):
        before = await bus.store.now_ms() // MINUTE_MS
        result = await step()
        if await bus.store.now_ms() // MINUTE_MS == before:
            return before, result
    raise AssertionError("two minutes began during two short steps")


async def test_fifty_concurrent_completions_are_each_counted_once(bus: AgentBus) -> None:
    for n in range(50):
        await bus.tasks.create("planner", title=f"job {n}", capability="count")
    held = [lease(await bus.tasks.claim(f"worker-{n}", capabilities=["count"])) for n in range(50)]

    async def complete(n: int) -> None:
        task_id, token = held[n]
        await bus.tasks.complete(f"worker-{n}", task_id, token, result=n)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(complete, n)
        again = await bus.tasks.complete("worker-0", *held[0], result=0)  # a repeat is not counted again
    assert again.already_completed

    stats = await last_hour(bus.store)
    assert sum(stats.done) == 50  # in the current minute, or split with the one before it
    assert sum(stats.done[-2:]) == 50
    assert sum(stats.failed) == sum(stats.dead) == 0
    assert len(stats.minutes) == len(stats.done) == MINUTES
    assert stats.minutes[-1] == stats.now_ms // MINUTE_MS * MINUTE_MS


async def test_a_failure_counts_as_failed_and_a_last_failure_also_as_dead(bus: AgentBus) -> None:
    await bus.tasks.create("planner", title="flaky", capability="fails", max_attempts=2)
    task_id, token = lease(await bus.tasks.claim("worker", capabilities=["fails"]))
    retried = await bus.tasks.fail("worker", task_id, token, error="try again")
    assert retried.state in ("delayed", "ready")
    assert (
        await bus.tasks.fail("worker", task_id, token, error="try again")
    ).already_failed  # not counted again
    claim = await bus.tasks.claim("worker", capabilities=["fails"], wait_seconds=5)  # its short backoff
    task_id, token = lease(claim)
    assert (await bus.tasks.fail("worker", task_id, token, error="for good")).state == "dead"

    stats = await last_hour(bus.store)
    assert (sum(stats.failed), sum(stats.dead), sum(stats.done)) == (2, 1, 0)


async def test_a_lease_the_reaper_takes_back_counts_as_failed_and_dead_on_the_last_attempt(
    quiet: AgentBus,
) -> None:
    await quiet.tasks.create("planner", title="abandoned", capability="lost", max_attempts=1)
    lease(await quiet.tasks.claim("crashed", capabilities=["lost"], lease_seconds=0.2))
    with anyio.fail_after(10):
        while sum((await last_hour(quiet.store)).dead) == 0:
            await anyio.sleep(0.1)  # until the lease has expired
            await quiet.reaper.sweep()
    stats = await last_hour(quiet.store)
    assert (sum(stats.failed), sum(stats.dead)) == (1, 1)


async def test_the_reaper_samples_the_ready_queues_once_a_minute(quiet: AgentBus) -> None:
    for cap, count in (("deep", 3), ("shallow", 1)):
        for n in range(count):
            await quiet.tasks.create("planner", title=f"{cap} {n}", capability=cap)

    async def sample_then_add() -> None:
        await quiet.reaper.sweep()  # the first sweep of the minute samples
        await quiet.tasks.create("planner", title="late", capability="deep")
        await quiet.reaper.sweep()  # a second sweep in the same minute does not sample again

    minute, _ = await in_one_minute(quiet, sample_then_add)
    assert await quiet.redis.hget(quiet.store.keys.depth, str(minute)) == "deep=3,shallow=1"

    stats = await last_hour(quiet.store)
    at = minute - stats.minutes[0] // MINUTE_MS
    assert stats.ready_now == {"deep": 4, "shallow": 1}  # now, read from the queues themselves
    assert stats.ready["deep"][at] == 3 and stats.ready["shallow"][at] == 1
    assert sum(stats.ready["deep"]) == 3  # no other minute has a sample
    assert stats.capabilities == 2


async def test_the_depth_charts_show_the_deepest_queues_only(quiet: AgentBus) -> None:
    for n in range(4):
        for _ in range(n + 1):
            await quiet.tasks.create("planner", title=f"q{n}", capability=f"q{n}")
    stats = await last_hour(quiet.store, caps=2)
    assert stats.ready_now == {"q3": 4, "q2": 3}
    assert list(stats.ready) == ["q3", "q2"] and stats.capabilities == 4


async def test_the_reapers_first_sweep_of_a_minute_keeps_only_the_last_hour(quiet: AgentBus) -> None:
    keys = quiet.store.keys

    async def write_old_minutes_then_sweep() -> None:
        minute = await quiet.store.now_ms() // MINUTE_MS
        await quiet.redis.hset(
            keys.throughput,
            mapping={f"done:{minute - 100}": 7, f"failed:{minute - 60}": 5, f"done:{minute - 59}": 2},
        )
        await quiet.redis.hset(keys.depth, mapping={str(minute - 61): "old=9", str(minute - 59): "kept=1"})
        assert (await last_hour(quiet.store)).done[0] == 2  # the read already shows only the hour
        await quiet.reaper.sweep()

    minute, _ = await in_one_minute(quiet, write_old_minutes_then_sweep)
    assert await quiet.redis.hgetall(keys.throughput) == {f"done:{minute - 59}": "2"}
    assert await quiet.redis.hgetall(keys.depth) == {str(minute - 59): "kept=1", str(minute): ""}
    stats = await last_hour(quiet.store)
    assert sum(stats.done) == 2 and sum(stats.failed) == 0
    assert set(stats.ready) == {"kept"}
