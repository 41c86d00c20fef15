"""Revoking a lock (a person freeing a stuck one, `Locks.revoke`): it is taken whatever its token, the
queue goes on as after a release with a higher fencing token, and the holder hears of it — in its next
call's notices, by its waits ending, and from its late release_lock."""

from __future__ import annotations

import pytest
from helpers import ALSO_ON_CLUSTER, WAIT_BOUND, fresh_settings, ms_of, until_redis_time, while_it_waits

from mcp_agentbus.context import Caller, Watch
from mcp_agentbus.core import notices
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.wakeups import STOPPED_FOR_LOSS
from mcp_agentbus.errors import InvalidArgument, NotFound

pytestmark = [pytest.mark.anyio, ALSO_ON_CLUSTER]

TOLD = (
    "Your lock on src/app.py was revoked by human and may be someone else's now: stop writing under it, "
    "and re-acquire it (a new fencing token) before writing more."
)


async def test_a_revoked_lock_goes_to_the_first_waiter_with_a_higher_fence_and_writes_its_event(
    bus: AgentBus,
) -> None:
    held = await bus.locks.acquire("alice", "src/app.py", ttl_seconds=60)
    assert held.acquired and held.fencing_token is not None

    async def revoke() -> None:
        revoked = await bus.locks.revoke("src/app.py", by="human")
        assert (revoked.holder, revoked.fencing_token, revoked.waiters) == ("alice", held.fencing_token, 1)

    got = await while_it_waits(
        lambda: bus.locks.acquire("bob", "src/app.py", ttl_seconds=60, wait_seconds=WAIT_BOUND), revoke
    )
    assert got.acquired, got
    assert got.fencing_token is not None and got.fencing_token > held.fencing_token
    listed = await bus.locks.held()
    assert [(lock.resource, lock.holder) for lock in listed.locks] == [("src/app.py", "bob")]

    events = (await bus.events.recent("lock.*")).events
    assert [(e.topic, e.agent) for e in events] == [
        ("lock.acquired", "alice"),
        ("lock.revoked", "human"),
        ("lock.acquired", "bob"),
    ]
    assert events[1].data == {"resource": "src/app.py", "holder": "alice", "fence": held.fencing_token}


async def test_the_holder_is_told_once_and_its_late_release_says_who_revoked_it(bus: AgentBus) -> None:
    held = await bus.locks.acquire("alice", "src/app.py", ttl_seconds=60)
    assert held.lock_token is not None
    await bus.locks.revoke("src/app.py", by="human")

    watch = Watch("alice")
    late = await bus.acting(Caller(watch)).locks.release("alice", "src/app.py", held.lock_token)
    assert not late.released
    assert late.reason == "this lock on src/app.py was revoked by human and is no longer yours"
    assert notices.lines(watch) == [TOLD]

    again = Watch("alice")
    await bus.acting(Caller(again)).events.publish("alice", "probe.call")
    assert notices.lines(again) == [], "told once"

    await bus.locks.acquire("bob", "src/app.py", ttl_seconds=60)
    later = await bus.locks.release("alice", "src/app.py", held.lock_token)
    assert (
        later.reason
        == "this lock on src/app.py was revoked by human and is no longer yours; bob holds it now"
    )
    assert [lock.holder for lock in (await bus.locks.held()).locks] == ["bob"], "bob's lock stays"


async def test_revoking_ends_the_holders_wait_for_another_lock(bus: AgentBus) -> None:
    await bus.locks.acquire("alice", "src/app.py", ttl_seconds=60)
    await bus.locks.acquire("carol", "docs/", ttl_seconds=60)

    waited = await while_it_waits(
        lambda: bus.locks.acquire("alice", "docs/x.md", ttl_seconds=60, wait_seconds=WAIT_BOUND * 4),
        lambda: bus.locks.revoke("src/app.py", by="human"),
    )
    assert not waited.acquired
    assert STOPPED_FOR_LOSS in waited.notices


async def test_revoking_what_is_not_held_is_not_found_and_writes_nothing(bus: AgentBus) -> None:
    with pytest.raises(NotFound, match=r"no lock is held on src/app\.py"):
        await bus.locks.revoke("src/app.py", by="human")
    got = await bus.locks.acquire("alice", "src/app.py", ttl_seconds=0.05)
    assert got.acquired
    await until_redis_time(bus, ms_of(got.expires_at))
    with pytest.raises(NotFound):
        await bus.locks.revoke("./src/app.py", by="human")
    assert [e.topic for e in (await bus.events.recent("lock.revoked")).events] == []
    with pytest.raises(InvalidArgument, match="agent id"):
        await bus.locks.revoke("src/app.py", by="not an id")


async def test_the_revoked_tokens_kept_are_bounded_by_locks_max_and_expire_with_the_retention(
    redis_url: str,
) -> None:
    async with AgentBus.open(fresh_settings(redis_url, locks_max=3, retention_seconds=60)) as bus:
        tokens = []
        for n in range(5):
            held = await bus.locks.acquire("alice", f"f{n}", ttl_seconds=60)
            tokens.append(held.lock_token)
            await bus.locks.revoke(f"f{n}", by="human")
        key = bus.store.keys.prefix + "locks_revoked"
        assert await bus.redis.zcard(key) == 3
        assert 0 < await bus.redis.pttl(key) <= 60_000
        told = [
            (await bus.locks.release("alice", f"f{n}", str(t))).reason or "" for n, t in enumerate(tokens)
        ]
        kinds = [
            "revoked" if "was revoked by human" in r else "gone" if "no lock is held" in r else r
            for r in told
        ]
        assert sorted(kinds) == ["gone", "gone", "revoked", "revoked", "revoked"], told
