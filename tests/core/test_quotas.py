"""Namespace quotas: a flood from one agent (inboxes of ids nobody uses, fan-out, tasks, agents, locks,
events) is refused past its bound with an error that says what to do, while another
agent's calls keep working; inboxes of agents that are not live expire. The memory ceiling itself is
measured on a private redis-server in test_quota_memory.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
import pytest
from helpers import ALSO_ON_CLUSTER, WAIT_BOUND, fresh_settings

from mcp_agentbus.core import reaper
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.errors import InboxFull, InvalidArgument

pytestmark = [pytest.mark.anyio, ALSO_ON_CLUSTER]

# Small bounds, so that each flood reaches its bound in a few calls.
SMALL: dict[str, Any] = {
    "event_log_max_bytes": 262_144,
    "tasks_max": 10,
    "agents_max": 8,
    "inbox_max_bytes": 65_536,
    "idle_inboxes_max": 5,
    "fanout_max_bytes": 65_536,
    "locks_max": 10,
}


@pytest.fixture
async def bus(redis_url: str) -> AsyncIterator[AgentBus]:
    async with AgentBus.open(fresh_settings(redis_url, **SMALL)) as bus:
        yield bus


def key(bus: AgentBus, name: str) -> str:
    return f"{bus.store.keys.prefix}{name}"


async def pttl(bus: AgentBus, name: str) -> int:
    return int(await bus.redis.pttl(key(bus, name)))


async def test_a_message_to_an_agent_that_is_not_live_waits_in_an_inbox_that_expires(bus: AgentBus) -> None:
    await bus.presence.heartbeat("bob")
    await bus.inbox.send("alice", "bob", "live")
    await bus.inbox.send("alice", "ghost", "nobody reads this")
    retention_ms = bus.settings.retention_seconds * 1000
    for name in ("inbox:ghost", "unread:ghost"):
        assert 0 < await pttl(bus, name) <= retention_ms, name
    for name in ("inbox:bob", "unread:bob"):
        assert await pttl(bus, name) == -1, f"{name}: a live agent's unread message must not expire"


async def test_an_agent_that_comes_back_keeps_its_inbox_for_good(bus: AgentBus) -> None:
    await bus.inbox.send("alice", "late", "read before coming")
    await bus.inbox.send("alice", "late", "read me when you come")
    await bus.inbox.read("late", limit=1)
    assert await pttl(bus, "read:late") > 0
    await bus.presence.heartbeat("late")
    for name in ("inbox:late", "unread:late", "read:late"):
        assert await pttl(bus, name) == -1, name
    assert await bus.redis.zscore(key(bus, "inboxes:idle"), "late") is None
    got = await bus.inbox.read("late")
    assert [m.body for m in got.messages] == ["read me when you come"]


async def test_the_inbox_of_an_agent_gone_silent_starts_to_expire(bus: AgentBus) -> None:
    await bus.presence.heartbeat("brief", ttl_seconds=0.2)
    await bus.inbox.send("alice", "brief", "are you there?")
    await bus.inbox.read("brief")
    await bus.inbox.send("alice", "brief", "still there?")
    assert await pttl(bus, "inbox:brief") == -1
    with anyio.fail_after(WAIT_BOUND):
        while True:  # until the reaper marks it gone
            if await pttl(bus, "inbox:brief") != -1:
                break
            await anyio.sleep(0.05)
    assert await pttl(bus, "unread:brief") > 0
    assert await pttl(bus, "read:brief") > 0
    assert await bus.redis.zscore(key(bus, "inboxes:idle"), "brief") is not None


async def test_what_an_idle_inbox_marks_read_expires_with_it(bus: AgentBus) -> None:
    await bus.inbox.send("alice", "away", "first")
    await bus.inbox.send("alice", "away", "second")
    await bus.inbox.read("away", limit=1)  # read without a heartbeat: the inbox stays idle
    inbox_ttl = await pttl(bus, "inbox:away")
    assert 0 < await pttl(bus, "read:away") <= inbox_ttl
    await bus.inbox.read("away")
    assert not await bus.redis.exists(key(bus, "unread:away"))
    assert 0 < await pttl(bus, "read:away") <= inbox_ttl


async def test_past_the_bound_the_idle_inbox_soonest_to_expire_goes_with_its_indexes(bus: AgentBus) -> None:
    agents = [f"brief-{n}" for n in range(SMALL["idle_inboxes_max"] + 1)]
    for agent in agents:  # the first is the first to go silent, so its inbox expires soonest
        await bus.presence.heartbeat(agent, ttl_seconds=0.2)
        await bus.inbox.send("alice", agent, "read this")
        await bus.inbox.send("alice", agent, "and this later")
        await bus.inbox.read(agent, limit=1)
    with anyio.fail_after(WAIT_BOUND):
        while True:  # until the reaper drops it
            if not await bus.redis.exists(key(bus, f"inbox:{agents[0]}")):
                break
            await anyio.sleep(0.05)
    for family in ("unread", "read"):
        assert not await bus.redis.exists(key(bus, f"{family}:{agents[0]}")), family
        assert await bus.redis.exists(key(bus, f"{family}:{agents[1]}")), family
    assert await bus.redis.zcard(key(bus, "inboxes:idle")) == SMALL["idle_inboxes_max"]


async def test_inboxes_for_ids_nobody_uses_are_refused_past_the_bound_while_live_agents_talk(
    bus: AgentBus,
) -> None:
    await bus.presence.heartbeat("bob")
    for n in range(SMALL["idle_inboxes_max"]):
        await bus.inbox.send("flooder", f"ghost-{n}", "hello?")
    with pytest.raises(InvalidArgument) as refused:
        await bus.inbox.send("flooder", "ghost-new", "hello?")
    assert "not live" in refused.value.message and "list_agents" in refused.value.hint
    assert not await bus.redis.exists(key(bus, "inbox:ghost-new")), "nothing is written on a refusal"
    await bus.inbox.send("flooder", "ghost-0", "an inbox that waits already takes more")
    sent = await bus.inbox.send("alice", "bob", "still working")
    assert sent.recipients == ["bob"]
    assert await bus.redis.zcard(key(bus, "inboxes:idle")) == SMALL["idle_inboxes_max"]


async def test_an_inbox_refuses_unread_messages_past_its_byte_bound_and_trims_read_ones(
    bus: AgentBus,
) -> None:
    await bus.presence.heartbeat("bob")
    body = "x" * 15_000  # four fit in 64 KiB, a fifth does not
    for _ in range(4):
        await bus.inbox.send("alice", "bob", body)
    with pytest.raises(InboxFull) as refused:
        await bus.inbox.send("alice", "bob", body)
    assert "65536 bytes" in refused.value.message
    assert len((await bus.inbox.read("bob", limit=10)).messages) == 4
    for _ in range(4):  # read messages make room
        await bus.inbox.send("alice", "bob", body)
    charged = int(await bus.redis.hget(key(bus, "inbox_bytes"), "bob") or 0)
    assert 4 * 15_000 < charged <= SMALL["inbox_max_bytes"]
    assert await bus.redis.xlen(key(bus, "inbox:bob")) == 4


async def test_a_message_larger_than_an_inbox_is_refused_with_what_to_do(bus: AgentBus) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await bus.inbox.send("alice", "bob", "€" * 16_000, data={"blob": "y" * 30_000})
    assert "an inbox keeps at most 65536" in refused.value.message
    assert "shorter" in refused.value.hint


async def test_a_broadcast_past_the_fan_out_bound_is_refused_and_points_to_an_event(bus: AgentBus) -> None:
    for n in range(6):
        await bus.presence.heartbeat(f"fake-{n}")
    with pytest.raises(InvalidArgument) as refused:
        await bus.inbox.send("flooder", "*", "z" * 12_000)  # 6 copies of 12 KB > 64 KiB
    assert "copies it into 6 inboxes" in refused.value.message
    assert "publish_event" in refused.value.hint
    assert not await bus.redis.exists(key(bus, "inbox:fake-0"))
    sent = await bus.inbox.send("alice", "*", "a short note fits")
    assert len(sent.recipients) == 6


async def test_agents_past_the_bound_are_not_registered_while_registered_ones_keep_heartbeating(
    bus: AgentBus,
) -> None:
    await bus.presence.heartbeat("worker")
    for n in range(SMALL["agents_max"] - 1):
        await bus.presence.heartbeat(f"fake-{n}")
    with pytest.raises(InvalidArgument) as refused:
        await bus.presence.heartbeat("one-too-many")
    assert "AGENTBUS_AGENTS_MAX" in refused.value.hint
    assert (await bus.presence.heartbeat("worker", status="busy")).agent.status == "busy"
    assert not await bus.redis.exists(key(bus, "agent:one-too-many"))


async def test_a_newcomer_pushes_out_the_record_of_the_agent_gone_longest(bus: AgentBus) -> None:
    for n in range(SMALL["agents_max"]):
        await bus.presence.heartbeat(f"brief-{n}", ttl_seconds=0.1)
    with anyio.fail_after(WAIT_BOUND):
        while True:  # until the reaper marks them all gone
            if not await bus.redis.zcard(key(bus, "agents")):
                break
            await anyio.sleep(0.05)
    await bus.presence.heartbeat("newcomer")
    records = await bus.redis.zcard(key(bus, "agents")) + await bus.redis.zcard(key(bus, "agents:gone"))
    assert records == SMALL["agents_max"]
    gone = await bus.presence.list_agents(include_gone=True)
    assert "newcomer" in [a.agent for a in gone.agents]


async def test_unfinished_tasks_past_the_bound_are_refused_and_finishing_one_makes_room(
    bus: AgentBus,
) -> None:
    for n in range(SMALL["tasks_max"]):
        await bus.tasks.create("flooder", title=f"t{n}")
    with pytest.raises(InvalidArgument) as refused:
        await bus.tasks.create("flooder", title="one too many")
    assert "unfinished tasks" in refused.value.message and "AGENTBUS_TASKS_MAX" in refused.value.hint
    with pytest.raises(InvalidArgument):
        await bus.workflows.create("flooder", title="wf", tasks=[{"key": "a", "title": "a"}])
    claim = await bus.tasks.claim("worker")
    assert claim.task is not None and claim.lease is not None
    await bus.tasks.complete("worker", claim.task.id, claim.lease.lease_token)
    made = await bus.tasks.create("planner", title="fits again")
    assert made.state == "ready"


async def test_the_event_log_keeps_at_most_its_byte_bound(bus: AgentBus) -> None:
    blob = "e" * 60_000
    for n in range(30):  # 1.8 MB published into a 256 KiB log
        await bus.events.publish("flooder", "flood.big", {"n": n, "blob": blob})
    published = await bus.events.publish("alice", "build.done", {"ok": True})
    entries = cast("list[tuple[str, dict[str, str]]]", await bus.redis.xrange(key(bus, "events"), "-", "+"))
    logged = sum(len(f["topic"]) + len(f["agent"]) + len(f["data"]) for _, f in entries)
    assert logged <= SMALL["event_log_max_bytes"] * 65 / 64
    assert entries[-1][0] == published.event_id
    assert len(entries) >= 3, "the log keeps what fits in its bound"
    assert await bus.redis.zcard(key(bus, "events:marks")) <= 66


async def test_fencing_tokens_grow_per_resource_and_nothing_is_kept_per_resource_ever_locked(
    bus: AgentBus,
) -> None:
    fences = []
    for n in range(20):
        got = await bus.locks.acquire("alice", f"src/f{n}.py")
        assert got.lock_token is not None
        await bus.locks.release("alice", f"src/f{n}.py", got.lock_token)
        again = await bus.locks.acquire("alice", "src/shared.py")
        assert again.lock_token is not None and again.fencing_token is not None
        fences.append(again.fencing_token)
        await bus.locks.release("alice", "src/shared.py", again.lock_token)
    assert fences == sorted(set(fences)), "a resource's fencing token went backwards or repeated"
    assert await bus.redis.hlen(key(bus, "lock_fences")) == 0


async def test_a_resource_fenced_by_an_older_version_continues_above_its_last_token(bus: AgentBus) -> None:
    await bus.redis.hset(key(bus, "lock_fences"), "legacy.cfg", 41)
    got = await bus.locks.acquire("alice", "legacy.cfg")
    assert got.fencing_token == 42
    assert not await bus.redis.hexists(key(bus, "lock_fences"), "legacy.cfg")
    assert got.lock_token is not None
    await bus.locks.release("alice", "legacy.cfg", got.lock_token)
    assert (await bus.locks.acquire("bob", "legacy.cfg")).fencing_token == 43


async def test_locks_past_the_bound_are_refused_while_held_ones_can_be_released(bus: AgentBus) -> None:
    held = [await bus.locks.acquire("flooder", f"f{n}") for n in range(SMALL["locks_max"])]
    with pytest.raises(InvalidArgument) as refused:
        await bus.locks.acquire("alice", "mine.txt")
    assert "release_lock" in refused.value.hint
    assert held[0].lock_token is not None
    assert (await bus.locks.release("flooder", "f0", held[0].lock_token)).released
    assert (await bus.locks.acquire("alice", "mine.txt")).acquired


async def test_counters_keep_no_field_for_a_capability_with_nothing_ready(bus: AgentBus) -> None:
    for n in range(5):
        await bus.tasks.create("planner", title=f"t{n}", capability=f"cap-{n}")
        claim = await bus.tasks.claim("worker", capabilities=[f"cap-{n}"])
        assert claim.task is not None and claim.lease is not None
        await bus.tasks.complete("worker", claim.task.id, claim.lease.lease_token)
    fields = cast("list[str]", await bus.redis.hkeys(key(bus, "counters")))  # decoded replies
    assert [f for f in fields if f.startswith("ready:")] == []


async def test_a_message_refused_by_a_full_inbox_leaves_no_trace(bus: AgentBus) -> None:
    first = await bus.inbox.send("alice", "bob", "the first message, kept for replies")
    await bus.inbox.read("bob")  # read: a send may trim it to make room, but only a send that fits
    body = "x" * 15_000
    for _ in range(4):  # bob is away: his idle inbox fills up with unread messages
        await bus.inbox.send("alice", "bob", body)
    counters_before = await bus.redis.hgetall(key(bus, "counters"))
    expiry_before = await pttl(bus, "inbox:bob")
    for _ in range(5):
        with pytest.raises(InboxFull):
            await bus.inbox.send("alice", "bob", body)
    assert await bus.redis.hgetall(key(bus, "counters")) == counters_before  # no message id taken
    assert await pttl(bus, "inbox:bob") <= expiry_before  # the idle inbox was not kept longer
    assert await bus.redis.xlen(key(bus, "inbox:bob")) == 5  # the read message is still there
    reply = await bus.inbox.send("bob", "alice", "a reply still finds its thread", reply_to=first.message_id)
    assert reply.thread_id == first.thread_id


async def test_workflows_older_than_the_retention_leave_the_index_behind_ones_still_running(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reaper, "BATCH", 2)  # fewer running workflows than this would hide nothing
    async with AgentBus.open(fresh_settings(redis_url, retention_seconds=1)) as bus:
        one_task = [{"key": "a", "title": "a"}]
        running = [await bus.workflows.create("boss", title=f"long {n}", tasks=one_task) for n in range(3)]
        done = await bus.workflows.create("boss", title="finished", tasks=one_task)
        claim = await bus.tasks.claim("w", task_id=done.task_ids["a"])
        assert claim.task is not None and claim.lease is not None
        await bus.tasks.complete("w", claim.task.id, claim.lease.lease_token)
        index = key(bus, "workflows")
        with anyio.fail_after(WAIT_BOUND):  # its record expires after 1 s, then the reaper gets to it
            while True:
                if await bus.redis.zscore(index, done.workflow_id) is None:
                    break
                await anyio.sleep(0.1)
        kept = [await bus.redis.zscore(index, wf.workflow_id) for wf in running]
        assert None not in kept  # still running: listed


async def test_an_expired_workflow_created_in_the_same_millisecond_as_a_page_end_still_leaves_the_index(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reaper's page cursor must not step over workflows that share the score (creation ms) the last
    page ended on: two workflows are often created within one millisecond."""
    monkeypatch.setattr(reaper, "BATCH", 2)
    async with AgentBus.open(fresh_settings(redis_url, retention_seconds=1)) as bus:
        one_task = [{"key": "a", "title": "a"}]
        first, second = [
            await bus.workflows.create("boss", title=f"long {n}", tasks=one_task) for n in range(2)
        ]
        index = key(bus, "workflows")
        # Old enough for the sweep; the expired one (no record) ties with the page's last, sorting after it.
        await bus.redis.zadd(index, {first.workflow_id: 1, second.workflow_id: 2, "wf-999999": 2})
        with anyio.fail_after(WAIT_BOUND):
            while True:
                if await bus.redis.zscore(index, "wf-999999") is None:
                    break
                await anyio.sleep(0.1)
        assert [await bus.redis.zscore(index, wf.workflow_id) for wf in (first, second)] == [1, 2]
