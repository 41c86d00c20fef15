"""No script runs long: cascades (a dead task cancelling everything downstream, a done one unblocking
its dependents) go in bounded batches that the reaper continues, and the graph and a claim's inputs
are bounded when tasks are created and completed."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from helpers import fresh_settings, view_of
from helpers.redis_servers import DATA_ARGS

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import ClaimResult
from mcp_agentbus.errors import InboxFull, InvalidArgument, PayloadTooLarge, WrongState
from mcp_agentbus.ids import (
    MAX_DEPENDENTS,
    MAX_FANOUT_RECIPIENTS,
    MAX_HELD_LOCKS,
    MAX_HELD_TASKS,
    MAX_INPUTS_BYTES,
    MAX_WORKFLOW_TASKS,
)
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio

SLOW_US = 50_000  # the goal: no script over 50 ms
WORKFLOW_TAIL = 150  # the last tasks of a chain also belong to the head's workflow


def lease_of(claim: ClaimResult) -> tuple[str, str]:
    assert claim.task is not None
    assert claim.lease is not None
    return claim.task.id, claim.lease.lease_token


async def chain(bus: AgentBus, length: int) -> tuple[str, list[str]]:
    """A workflow holding a head task (one attempt) and a chain of `length` - 1 tasks, each depending on
    the one before; the last WORKFLOW_TAIL of them also join the head's workflow, so the workflow can
    only finish when the cascade reaches the end of the chain."""
    created = await bus.workflows.create(
        "planner", title="chain", tasks=[{"key": "head", "title": "head", "max_attempts": 1}]
    )
    wf, ids = created.workflow_id, [created.task_ids["head"]]
    for i in range(1, length):
        joins = i >= length - WORKFLOW_TAIL
        task = await bus.tasks.create(
            "planner", title=f"link {i}", depends_on=[ids[-1]], workflow_id=wf if joins else None
        )
        ids.append(task.task_id)
    return wf, ids


async def kill_head(bus: AgentBus, ids: list[str]) -> list[str]:
    """Claim and fail the head for good; the dependents its own call cancelled."""
    head, token = lease_of(await bus.tasks.claim("worker", task_id=ids[0]))
    failed = await bus.tasks.fail("worker", head, token, error="no data", retry=False)
    assert failed.state == "dead"
    assert len(failed.notices) == 1
    assert "further downstream" in failed.notices[0]
    return failed.cancelled


async def states(bus: AgentBus, ids: list[str]) -> list[str]:
    """Each task's state, from its hash: no tool reads a task outside a workflow."""
    keys = bus.store.keys
    async with bus.redis.pipeline(transaction=False) as pipe:
        for task_id in ids:
            pipe.hget(keys.task(task_id), "state")
        return list(await pipe.execute())


async def nothing_half_done(bus: AgentBus, wf: str) -> bool:
    """What an agent may see while a cascade runs: nothing downstream is claimable or ready, and the
    workflow is `running` until every task of it is final. True once the workflow has finished."""
    assert (await bus.tasks.claim("opportunist")).task is None
    got = (await bus.workflows.get(wf)).workflow
    assert got is not None
    assert {t.state for t in got.tasks} <= {"dead", "cancelled", "blocked"}
    if got.status == "running":
        return False
    assert got.status == "failed"
    assert {t.state for t in got.tasks} <= {"dead", "cancelled"}
    assert (got.progress.dead, got.progress.cancelled, got.progress.blocked) == (1, WORKFLOW_TAIL, 0)
    return True


async def cancelled_all_the_way_down(bus: AgentBus, wf: str, ids: list[str], seconds: float) -> None:
    with anyio.fail_after(seconds):
        while True:
            if await nothing_half_done(bus, wf):
                break
            await anyio.sleep(0.05)
    assert await states(bus, ids) == ["dead", *["cancelled"] * (len(ids) - 1)]


# --- cascades ---------------------------------------------------------------------------------------


async def test_a_cascade_longer_than_a_batch_waits_blocked_for_the_reaper_and_nothing_is_claimable(
    settings: Settings,
) -> None:
    async with AgentBus.open(settings, reaper=False) as bus:
        wf, ids = await chain(bus, 400)
        cancelled = await kill_head(bus, ids)
        assert 0 < len(cancelled) < len(ids) - 1, "the failing call cancels one batch, not all"
        assert cancelled == ids[1 : len(cancelled) + 1]
        assert not await nothing_half_done(bus, wf)
        rest = await states(bus, ids[len(cancelled) + 1 :])
        assert set(rest) == {"blocked"}

        # A task added below a task whose cancellation is pending is cancelled with it.
        late = await bus.tasks.create("planner", title="late", depends_on=[ids[-1]])
        assert late.state == "blocked"

        swept = await bus.reaper.sweep()
        assert swept is not None
        assert swept.cascaded == len(ids) - 1 - len(cancelled) + 1
        assert await nothing_half_done(bus, wf)
        assert await bus.redis.llen(bus.store.keys.cascade) == 0
        assert await states(bus, [*ids, late.task_id]) == ["dead", *["cancelled"] * len(ids)]
        events = await bus.events.read(after="0", topics=["task.cancelled"], limit=500)
        assert len(events.events) == len(ids)
        assert len({e.data["task"] for e in events.events}) == len(ids)


async def test_a_dead_head_of_a_long_chain_cancels_every_task_without_any_slow_script(
    own_redis: Callable[..., str],
) -> None:
    url = own_redis(*DATA_ARGS, "--slowlog-log-slower-than", str(SLOW_US), "--slowlog-max-len", "1000")
    async with AgentBus.open(fresh_settings(url)) as bus:
        wf, ids = await chain(bus, 10_000)  # one script for it all took some 90 ms
        await bus.redis.slowlog_reset()
        await kill_head(bus, ids)
        await cancelled_all_the_way_down(bus, wf, ids, seconds=20)
        slow = await bus.redis.slowlog_get(1000)
    assert [(entry["duration"], entry["command"][:40]) for entry in slow] == []


async def test_a_task_with_the_most_dependents_unblocks_them_all_and_refuses_one_more(bus: AgentBus) -> None:
    first = await bus.tasks.create("planner", title="first")
    dependents: list[str] = []

    async def add(n: int) -> None:
        for _ in range(n):
            dependents.append(
                (await bus.tasks.create("planner", title="then", depends_on=[first.task_id])).task_id
            )

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(add, MAX_DEPENDENTS // 10)
    assert len(set(dependents)) == MAX_DEPENDENTS
    with pytest.raises(InvalidArgument, match=f"already has {MAX_DEPENDENTS:,} dependents") as refused:
        await bus.tasks.create("planner", title="one too many", depends_on=[first.task_id])
    assert refused.value.hint

    task_id, token = lease_of(await bus.tasks.claim("worker"))
    assert task_id == first.task_id
    done = await bus.tasks.complete("worker", task_id, token, result="go")
    assert 0 < len(done.unblocked) < MAX_DEPENDENTS
    assert len(done.notices) == 1
    assert f"lists only the {len(done.unblocked)} this call released" in done.notices[0]
    with anyio.fail_after(10):
        while True:
            probe = await bus.tasks.claim("probe", capabilities=["nobody"])
            if probe.ready_elsewhere.get("any") == MAX_DEPENDENTS:
                break
            await anyio.sleep(0.05)
    claim = await bus.tasks.claim("worker")
    assert claim.task is not None
    assert claim.task.inputs == {first.task_id: "go"}


# --- bounds on the graph ----------------------------------------------------------------------------


async def test_create_task_cannot_grow_a_workflow_past_its_task_limit(bus: AgentBus) -> None:
    tasks: list[dict[str, Any]] = [{"key": f"k{i}", "title": "t"} for i in range(MAX_WORKFLOW_TASKS - 1)]
    created = await bus.workflows.create("planner", title="full", tasks=tasks)
    last = await bus.tasks.create("planner", title="the last one", workflow_id=created.workflow_id)
    assert last.state == "ready"

    with pytest.raises(InvalidArgument, match=f"{MAX_WORKFLOW_TASKS} tasks") as refused:
        await bus.tasks.create("planner", title="one too many", workflow_id=created.workflow_id)
    assert "create_workflow" in refused.value.hint
    got = (await bus.workflows.get(created.workflow_id)).workflow
    assert got is not None
    assert got.progress.total == len(got.tasks) == MAX_WORKFLOW_TASKS


async def test_an_agent_holding_the_most_leases_must_finish_one_before_it_claims_again(bus: AgentBus) -> None:
    async def create(n: int) -> None:
        for _ in range(n):
            await bus.tasks.create("planner", title="job")

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(create, (MAX_HELD_TASKS + 1) // 10 + 1)
    held = [lease_of(await bus.tasks.claim("hoarder")) for _ in range(MAX_HELD_TASKS)]

    with pytest.raises(WrongState, match=f"already holds {MAX_HELD_TASKS:,} task leases") as refused:
        await bus.tasks.claim("hoarder")
    assert "complete_task" in refused.value.hint
    beat = await bus.presence.heartbeat("hoarder")
    assert len(beat.leases_extended) == MAX_HELD_TASKS

    await bus.tasks.complete("hoarder", *held[0])
    assert (await bus.tasks.claim("hoarder")).task is not None
    assert (await bus.tasks.claim("someone-else")).task is not None


async def test_an_agent_holding_the_most_locks_must_release_one_before_it_locks_again(bus: AgentBus) -> None:
    held = [await bus.locks.acquire("hoarder", f"src/file-{n}.py") for n in range(MAX_HELD_LOCKS)]
    assert all(lock.acquired for lock in held)

    with pytest.raises(WrongState, match=f"already holds {MAX_HELD_LOCKS} locks") as refused:
        await bus.locks.acquire("hoarder", "src/one-more.py")
    assert "release_lock" in refused.value.hint
    assert not (await bus.locks.acquire("someone-else", "src/file-0.py")).acquired  # still held
    again = await bus.locks.acquire("hoarder", "src/file-0.py", ttl_seconds=30)  # extending is not more
    assert again.acquired and again.extended

    await bus.locks.release("hoarder", "src/file-0.py", held[0].lock_token or "")
    assert (await bus.locks.acquire("hoarder", "src/one-more.py")).acquired
    assert (await bus.locks.acquire("someone-else", "src/file-0.py")).acquired


async def test_a_message_to_all_is_refused_past_the_most_live_agents_it_may_reach(settings: Settings) -> None:
    async with AgentBus.open(settings.model_copy(update={"agents_max": MAX_FANOUT_RECIPIENTS + 10})) as bus:

        async def join(first: int) -> None:
            for n in range(first, first + 100):
                await bus.presence.heartbeat(f"agent-{n}", capabilities=["build"])

        async with anyio.create_task_group() as tg:
            for first in range(0, MAX_FANOUT_RECIPIENTS, 100):
                tg.start_soon(join, first)
        sent = await bus.inbox.send("agent-0", "*", "fits: everyone else is reached")
        assert len(sent.recipients) == MAX_FANOUT_RECIPIENTS - 1

        await bus.presence.heartbeat("one-too-many", capabilities=["build"])
        for to in ("*", "role:build"):
            with pytest.raises(InvalidArgument, match=f"more than {MAX_FANOUT_RECIPIENTS} agents are live"):
                await bus.inbox.send("agent-0", to, "too many to copy into")
        direct = await bus.inbox.send("agent-0", "one-too-many", "a message to one agent still goes")
        assert direct.recipients == ["one-too-many"]


async def test_an_inbox_full_of_unread_messages_refuses_one_more_without_reading_its_entries(
    own_redis: Callable[..., str],
) -> None:
    """A refused send costs the same however many unread messages wait: nothing in the full inbox is
    read to look for read ones to trim (Redis counts the commands a script runs)."""
    async with AgentBus.open(fresh_settings(own_redis(*DATA_ARGS), inbox_max=1_000), reaper=False) as bus:
        for n in range(1_000):
            await bus.inbox.send("alice", "bob", f"n{n}")
        await bus.redis.config_resetstat()
        with pytest.raises(InboxFull):
            await bus.inbox.send("alice", "bob", "one too many")
        stats = await bus.redis.info("commandstats")
    assert "cmdstat_evalsha" in stats
    assert "cmdstat_xrange" not in stats and "cmdstat_zscore" in stats  # only the recipient's liveness


async def test_a_directory_above_thousands_of_expired_locks_is_locked_without_a_slow_script(
    own_redis: Callable[..., str],
) -> None:
    url = own_redis(*DATA_ARGS, "--slowlog-log-slower-than", str(SLOW_US), "--slowlog-max-len", "1000")
    settings = fresh_settings(url)
    async with AgentBus.open(settings, reaper=False) as bus:

        async def hold(agent: int) -> None:
            for n in range(MAX_HELD_LOCKS):
                assert (
                    await bus.locks.acquire(f"a{agent}", f"files/{agent}-{n}.txt", ttl_seconds=1)
                ).acquired

        async with anyio.create_task_group() as tg:
            for agent in range(15):  # 3,000 locks below files/, all soon expired, none taken back yet
                tg.start_soon(hold, agent)
        await anyio.sleep(1.1)
        await bus.redis.slowlog_reset()
        with pytest.raises(WrongState, match="expired locks below files/") as crowded:
            await bus.locks.acquire("dir-owner", "files/")
        assert "again" in crowded.value.hint
        async with AgentBus.open(settings):  # a reaper takes the rest back
            with anyio.fail_after(20):
                while True:
                    with contextlib.suppress(WrongState):  # until the reaper is through
                        got = await bus.locks.acquire("dir-owner", "files/")
                        if got.acquired:
                            break
                    await anyio.sleep(0.2)
        assert got.resource == "files/"
        slow = await bus.redis.slowlog_get(1000)
    assert [(entry["duration"], entry["command"][:40]) for entry in slow] == []


# --- inputs -----------------------------------------------------------------------------------------

BIG = 40_000  # bytes of JSON per result: four fit in MAX_INPUTS_BYTES, five do not
assert 4 * (BIG + 2) <= MAX_INPUTS_BYTES < 5 * (BIG + 2)


async def test_a_result_that_would_overflow_a_dependents_inputs_is_refused_and_the_lease_is_kept(
    bus: AgentBus,
) -> None:
    sources = [{"key": f"s{i}", "title": "source"} for i in range(5)]
    created = await bus.workflows.create(
        "planner",
        title="fan-in",
        tasks=[*sources, {"key": "sink", "title": "sink", "depends_on": ["s0", "s1", "s2", "s3", "s4"]}],
    )
    ids = created.task_ids
    for key in ("s0", "s1", "s2", "s3"):
        task_id, token = lease_of(await bus.tasks.claim("worker", task_id=ids[key]))
        await bus.tasks.complete("worker", task_id, token, result="x" * BIG)

    task_id, token = lease_of(await bus.tasks.claim("worker", task_id=ids["s4"]))
    with pytest.raises(PayloadTooLarge, match=ids["sink"]) as refused:
        await bus.tasks.complete("worker", task_id, token, result="x" * BIG)
    assert "reference" in refused.value.hint
    view = await view_of(bus, created.workflow_id, task_id)
    assert (view.state, view.assignee, view.result) == ("claimed", "worker", None)

    done = await bus.tasks.complete("worker", task_id, token, result={"stored_at": "s3://bucket/s4"})
    assert done.unblocked == [ids["sink"]]
    sink = await bus.tasks.claim("worker")
    assert sink.task is not None
    assert sink.task.inputs == {
        **{k: "x" * BIG for k in ("s0", "s1", "s2", "s3")},
        "s4": {"stored_at": "s3://bucket/s4"},
    }


async def test_a_task_whose_done_dependencies_results_overflow_its_inputs_is_refused(bus: AgentBus) -> None:
    done = []
    for _ in range(5):
        created = await bus.tasks.create("planner", title="source")
        task_id, token = lease_of(await bus.tasks.claim("worker", task_id=created.task_id))
        await bus.tasks.complete("worker", task_id, token, result="x" * BIG)
        done.append(task_id)

    fits = await bus.tasks.create("planner", title="four inputs", depends_on=done[:4])
    assert fits.state == "ready"
    with pytest.raises(PayloadTooLarge, match=f"{MAX_INPUTS_BYTES:,}"):
        await bus.tasks.create("planner", title="five inputs", depends_on=done)
    claims = [await bus.tasks.claim("worker") for _ in range(2)]
    assert [c.task.id if c.task else None for c in claims] == [fits.task_id, None]
