"""Shared state through the core API, on fakeredis and a real redis-server: versions, compare-and-set,
increments, deletion, expiry from the Redis clock, events, and the namespace's bounds."""

from __future__ import annotations

import json

import anyio
import pytest
from helpers import ALSO_ON_CLUSTER, fresh_settings, ms_of, redis_ms, until_redis_time

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.errors import InvalidArgument, PayloadTooLarge, WrongState
from mcp_agentbus.settings import Settings

pytestmark = [pytest.mark.anyio, ALSO_ON_CLUSTER]


async def state_events(bus: AgentBus) -> list[tuple[str, dict[str, object]]]:
    read = await bus.events.read(topics=["state.*"], after="0", limit=500)
    return [(e.topic, e.data) for e in read.events]


async def test_versions_start_at_one_and_grow_with_every_write(bus: AgentBus) -> None:
    first = await bus.state.set("planner", "plan/current", value={"step": 1})
    second = await bus.state.set("worker-1", "plan/current", value={"step": 2})
    assert (first.written, first.version, first.value) == (True, 1, {"step": 1})
    assert (second.written, second.version, second.value) == (True, 2, {"step": 2})
    [entry] = (await bus.state.get("plan/current")).entries
    assert (entry.key, entry.value, entry.version, entry.updated_by) == (
        "plan/current",
        {"step": 2},
        2,
        "worker-1",
    )
    assert entry.expires_at is None
    assert abs(ms_of(entry.updated_at) - await redis_ms(bus)) < 5_000


async def test_a_key_is_canonical_like_a_lock_resource(bus: AgentBus) -> None:
    await bus.state.set("a", "./results//x/../y", value=1)
    assert (await bus.state.get("results/y")).entries[0].value == 1
    with pytest.raises(InvalidArgument, match=r"key '\.\./up' climbs above"):
        await bus.state.set("a", "../up", value=1)


async def test_if_version_zero_creates_only_a_key_that_is_not_set(bus: AgentBus) -> None:
    created = await bus.state.set("a", "leader", value="a", if_version=0)
    refused = await bus.state.set("b", "leader", value="b", if_version=0)
    assert (created.written, created.version) == (True, 1)
    assert (refused.written, refused.version, refused.current_version, refused.current_value) == (
        False,
        None,
        1,
        "a",
    )
    assert (await bus.state.get("leader")).entries[0].value == "a"


async def test_a_stale_if_version_changes_nothing_and_tells_the_current_version(bus: AgentBus) -> None:
    await bus.state.set("a", "doc", value="v1")
    await bus.state.set("a", "doc", value="v2")
    stale = await bus.state.set("b", "doc", value="mine", if_version=1)
    fresh = await bus.state.set("b", "doc", value="mine", if_version=2)
    assert (stale.written, stale.current_version, stale.current_value) == (False, 2, "v2")
    assert (fresh.written, fresh.version) == (True, 3)
    assert [d["version"] for t, d in await state_events(bus) if t == "state.set"] == [1, 2, 3]


async def test_increment_adds_to_a_number_and_starts_a_missing_key_at_zero(bus: AgentBus) -> None:
    assert (await bus.state.set("a", "count", increment=5)).value == 5
    assert (await bus.state.set("a", "count", increment=-2)).value == 3
    assert (await bus.state.set("a", "count", increment=0.25)).value == 3.25
    big = await bus.state.set("a", "big", increment=2**52)
    assert (await bus.state.set("a", "big", increment=1)).value == 2**52 + 1 == big.value + 1


async def test_increment_of_a_value_that_is_no_number_is_refused_and_changes_nothing(bus: AgentBus) -> None:
    await bus.state.set("a", "name", value={"n": 1})
    with pytest.raises(WrongState, match="not a number") as refused:
        await bus.state.set("a", "name", increment=1)
    assert "value" in refused.value.hint
    [entry] = (await bus.state.get("name")).entries
    assert (entry.value, entry.version) == ({"n": 1}, 1)


async def test_exactly_one_of_value_increment_or_delete(bus: AgentBus) -> None:
    for kwargs in ({}, {"value": 1, "increment": 1.0}, {"value": 1, "delete": True}):
        with pytest.raises(InvalidArgument, match="exactly one of value, increment or delete"):
            await bus.state.set("a", "k", **kwargs)
    assert (await bus.state.get(prefix="")).entries == []


async def test_a_delete_with_an_expiry_is_refused_and_the_key_kept(bus: AgentBus) -> None:
    await bus.state.set("a", "k", value=1)
    with pytest.raises(InvalidArgument, match="a delete takes none"):
        await bus.state.set("a", "k", delete=True, ttl_seconds=5)
    assert [(e.version, e.value, e.expires_at) for e in (await bus.state.get("k")).entries] == [(1, 1, None)]


async def test_a_value_past_the_bound_is_payload_too_large(redis_url: str) -> None:
    settings = fresh_settings(redis_url, state_value_max_bytes=1_024)
    async with AgentBus.open(settings) as bus:
        with pytest.raises(PayloadTooLarge, match="1,024"):
            await bus.state.set("a", "big", value="x" * 1_100)
        assert (await bus.state.set("a", "big", value="x" * 1_000)).written


async def test_a_deleted_key_is_gone_and_its_recreation_continues_the_count(bus: AgentBus) -> None:
    await bus.state.set("a", "k", value=1)
    await bus.state.set("a", "k", value=2)
    deleted = await bus.state.set("a", "k", delete=True)
    assert (deleted.written, deleted.version, deleted.value) == (True, 3, None)
    assert (await bus.state.get("k")).entries == []
    again = await bus.state.set("a", "k", value="back", if_version=0)
    assert (again.written, again.version) == (True, 4)
    assert await state_events(bus) == [
        ("state.set", {"key": "k", "version": 1}),
        ("state.set", {"key": "k", "version": 2}),
        ("state.deleted", {"key": "k", "version": 3}),
        ("state.set", {"key": "k", "version": 4}),
    ]


async def test_deleting_a_key_that_is_not_set_writes_nothing_and_says_so(bus: AgentBus) -> None:
    result = await bus.state.set("a", "never", delete=True)
    assert (result.written, result.version) == (False, None)
    assert result.notices == ["never is not set: nothing was deleted."]
    assert await state_events(bus) == []


async def test_a_retried_call_with_its_idempotency_key_adds_once(bus: AgentBus) -> None:
    first = await bus.state.set("a", "n", increment=1, idempotency_key="inc-1")
    again = await bus.state.set("a", "n", increment=1, idempotency_key="inc-1")
    other = await bus.state.set("b", "n", increment=1, idempotency_key="inc-1")  # keys are per agent
    assert (first.version, first.value, first.duplicate) == (1, 1, False)
    assert (again.version, again.value, again.duplicate) == (1, 1, True)
    assert (other.version, other.value) == (2, 2)


async def test_an_idempotency_key_used_again_for_another_key_answers_for_the_first_and_says_so(
    bus: AgentBus,
) -> None:
    await bus.state.set("a", "ia", value=1, idempotency_key="k1")
    again = await bus.state.set("a", "ib", value=2, idempotency_key="k1")
    assert (again.duplicate, again.key, again.version, again.value) == (True, "ia", 1, 1)
    assert again.notices == [
        "idempotency_key k1 was first used for ia: this is that call's result, and ib was not written. "
        "Use a new idempotency_key for a new write."
    ]
    assert (await bus.state.get("ib")).entries == []


@pytest.mark.parametrize(("start", "step"), [(2**53 - 1, 1), (2**60, 1), (0, 2**60), (-(2**53) + 1, -1)])
async def test_a_count_that_would_pass_2_to_the_53_is_refused_and_left_as_it_was(
    bus: AgentBus, start: int, step: int
) -> None:
    """Past 2^53 a double cannot hold every whole number: the sum would be off, or the same."""
    if start:
        await bus.state.set("a", "n", value=start)
    with pytest.raises(InvalidArgument, match="2\\^53"):
        await bus.state.set("a", "n", increment=step)
    entries = (await bus.state.get("n")).entries
    assert [(e.version, e.value) for e in entries] == ([(1, start)] if start else [])


async def test_a_key_expires_by_the_redis_clock_and_its_expiry_is_a_deletion(bus: AgentBus) -> None:
    before = await redis_ms(bus)
    written = await bus.state.set("a", "lease/x", value="held", ttl_seconds=0.3)
    assert written.expires_at is not None
    assert int(before) + 300 <= ms_of(written.expires_at) <= await redis_ms(bus) + 300
    kept = await bus.state.set("a", "lease/x", value="still")  # without ttl_seconds the expiry stays
    assert kept.expires_at == written.expires_at
    await until_redis_time(bus, ms_of(written.expires_at))
    assert (await bus.state.get("lease/x")).entries == []
    assert (await bus.state.get(prefix="lease/")).entries == []
    again = await bus.state.set("a", "lease/x", value="new", if_version=0)
    assert (again.written, again.version) == (True, 4)  # 1, 2, its expiry 3, then 4
    assert ("state.deleted", {"key": "lease/x", "version": 3, "expired": True}) in await state_events(bus)


async def test_events_carry_the_key_and_version_but_never_the_value(bus: AgentBus) -> None:
    await bus.state.set("a", "secret", value={"token": "s3cr3t"})
    read = await bus.events.read(topics=["state.*"], after="0")
    assert [e.agent for e in read.events] == ["a"]
    assert "s3cr3t" not in json.dumps([e.data for e in read.events])


async def test_agents_cannot_publish_state_events_of_their_own(bus: AgentBus) -> None:
    with pytest.raises(InvalidArgument, match="reserved"):
        await bus.events.publish("a", "state.set", {"key": "k", "version": 99})


async def test_the_namespace_key_count_bound_refuses_new_keys_with_a_hint(redis_url: str) -> None:
    settings = fresh_settings(redis_url, state_keys_max=3)
    async with AgentBus.open(settings) as bus:
        for n in range(3):
            await bus.state.set(f"agent-{n}", f"k{n}", value=n)
        with pytest.raises(InvalidArgument, match="3 shared-state keys") as refused:
            await bus.state.set("agent-9", "k3", value=3)
        assert "delete" in refused.value.hint
        assert (await bus.state.set("agent-9", "k0", increment=1)).written  # a key that is set still changes
        await bus.state.set("agent-0", "k0", delete=True)
        assert (await bus.state.set("agent-9", "k3", value=3)).written
        assert [e.key for e in (await bus.state.get(prefix="")).entries] == ["k1", "k2", "k3"]


async def test_expired_keys_do_not_count_against_the_bound(redis_url: str) -> None:
    settings = fresh_settings(redis_url, state_keys_max=2)
    async with AgentBus.open(settings) as bus:
        short = await bus.state.set("a", "short", value=1, ttl_seconds=0.2)
        await bus.state.set("a", "long", value=1)
        assert short.expires_at is not None
        await until_redis_time(bus, ms_of(short.expires_at))
        assert (await bus.state.set("a", "next", value=1)).written


async def test_each_owner_may_hold_only_its_share_of_the_keys(redis_url: str) -> None:
    settings = fresh_settings(redis_url, state_keys_max_per_owner=2)
    async with AgentBus.open(settings) as bus:
        await bus.state.set("greedy", "g1", value=1)
        await bus.state.set("greedy", "g2", value=1)
        with pytest.raises(InvalidArgument, match="agent greedy's share") as refused:
            await bus.state.set("greedy", "g3", value=1)
        assert "AGENTBUS_STATE_KEYS_MAX_PER_OWNER" in refused.value.hint
        assert (await bus.state.set("other", "o1", value=1)).written
        assert (await bus.state.set("other", "g1", increment=1)).written  # g1 stays charged to greedy
        await bus.state.set("other", "g1", delete=True)
        assert (await bus.state.set("greedy", "g3", value=1)).written


async def test_tombstones_are_bounded_and_versions_still_only_grow(redis_url: str) -> None:
    """Past state_keys_max tombstones the lowest go; a key whose tombstone went starts above it."""
    settings = fresh_settings(redis_url, state_keys_max=2)
    async with AgentBus.open(settings) as bus:
        for n in range(3):
            await bus.state.set("a", "old", value=n)  # old reaches version 3
        await bus.state.set("a", "old", delete=True)  # tombstone 4
        for name in ("x", "y"):
            await bus.state.set("a", name, value=1)
            await bus.state.set("a", name, delete=True)  # tombstones 2, 2: one of the three goes
        assert await bus.redis.zcard(bus.store.keys.state_tombs) == 2
        assert (await bus.state.set("a", "old", value="again")).version == 5  # the highest was kept
        await bus.state.set("a", "old", delete=True)
        for name in ("x", "y"):  # one of their tombstones went: it continues above the one that went
            assert (await bus.state.set("a", name, value="again")).version == 3


async def test_concurrent_increments_from_several_buses_sum_exactly(settings: Settings) -> None:
    async with (
        AgentBus.open(settings) as one,
        AgentBus.open(settings) as two,
        AgentBus.open(settings) as three,
    ):
        buses = [one, two, three]
        versions: list[int] = []

        async def add(n: int) -> None:
            result = await buses[n % 3].state.set(f"agent-{n}", "counter", increment=1)
            assert result.version is not None
            versions.append(result.version)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for n in range(50):
                    tg.start_soon(add, n)
        [entry] = (await one.state.get("counter")).entries
    assert (entry.value, entry.version) == (50, 50)
    assert sorted(versions) == list(range(1, 51))
