"""Locks through the core API: exclusive, expiring, fenced, hierarchical, with fair server-side waits."""

from __future__ import annotations

import itertools
import math
import unicodedata
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from helpers import ALSO_ON_CLUSTER, WAIT_BOUND, ms_of, redis_ms, until_redis_time

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import LockResult
from mcp_agentbus.errors import InvalidArgument, NotLockOwner
from mcp_agentbus.settings import Settings

pytestmark = [pytest.mark.anyio, ALSO_ON_CLUSTER]


async def probe(bus: AgentBus, resource: str, agent: str = "probe") -> LockResult:
    """A no-wait attempt by an outsider that must be refused (it reports holder and waiters)."""
    seen = await bus.locks.acquire(agent, resource, ttl_seconds=30)
    assert not seen.acquired, seen
    return seen


async def until_waiters(bus: AgentBus, resource: str, count: int) -> None:
    """Poll (bounded) until `count` agents are queued for `resource`."""
    with anyio.fail_after(WAIT_BOUND):
        while True:
            if (await probe(bus, resource)).waiters == count:
                return
            await anyio.sleep(0.01)


async def locks_of(bus: AgentBus, agent: str) -> list[str]:
    listed = await bus.presence.list_agents()
    view = next(a for a in listed.agents if a.agent == agent)
    return view.locks


# --- grant and refusal -----------------------------------------------------------------------------


async def test_a_lock_is_granted_then_refused_naming_holder_resource_and_expiry(bus: AgentBus) -> None:
    before = await redis_ms(bus)
    got = await bus.locks.acquire("alice", "src/app.py", ttl_seconds=30)
    after = await redis_ms(bus)

    assert got.acquired is True
    assert got.resource == "src/app.py"
    assert got.lock_token
    assert got.fencing_token is not None and got.fencing_token >= 1
    assert got.extended is False
    assert got.holder is None and got.conflicting_resource is None
    # the TTL runs on the Redis clock
    assert math.floor(before) + 30_000 <= ms_of(got.expires_at) <= after + 30_000

    refused = await bus.locks.acquire("bob", "src/app.py", ttl_seconds=30)
    assert refused.acquired is False
    assert refused.resource == "src/app.py"
    assert refused.holder == "alice"
    assert refused.conflicting_resource == "src/app.py"
    assert refused.expires_at == got.expires_at
    assert refused.lock_token is None and refused.fencing_token is None
    assert refused.waiters == 0, "a refused attempt without wait_seconds does not queue"

    again = await bus.locks.acquire("carol", "src/app.py", ttl_seconds=30)
    assert again.acquired is False and again.holder == "alice"


async def test_distinct_resources_are_locked_independently(bus: AgentBus) -> None:
    a = await bus.locks.acquire("alice", "a.txt")
    b = await bus.locks.acquire("bob", "b.txt")
    assert a.acquired and b.acquired
    assert a.lock_token != b.lock_token


# --- hierarchy -------------------------------------------------------------------------------------

HIERARCHY = [
    # a directory and what lies below it conflict, both ways
    pytest.param("src/auth/", "src/auth/login.py", True, id="dir-then-file"),
    pytest.param("src/auth/login.py", "src/auth/", True, id="file-then-dir"),
    pytest.param("src/auth", "src/auth/login.py", True, id="dir-no-slash-then-file"),
    pytest.param("src/auth/login.py", "src/auth", True, id="file-then-dir-no-slash"),
    pytest.param("src/auth", "src/auth/", True, id="name-then-name-slash"),
    pytest.param("src/auth/", "src/auth", True, id="name-slash-then-name"),
    pytest.param("src/auth/login.py", "src/auth/login.py", True, id="same-file"),
    # deeper nesting
    pytest.param("src/", "src/auth/deep/er/x.py", True, id="top-dir-then-deep-file"),
    pytest.param("src/auth/deep/er/x.py", "src/", True, id="deep-file-then-top-dir"),
    pytest.param("src", "src/auth/deep/x.py", True, id="top-name-then-deep-file"),
    pytest.param("a/b/c/d/e.txt", "a/b/", True, id="deep-file-then-mid-dir"),
    pytest.param("a/b/c/", "a/b/c/d/e/f.txt", True, id="mid-dir-then-deeper-file"),
    # absolute paths
    pytest.param("/etc/x", "/etc/x", True, id="abs-same"),
    pytest.param("/etc/", "/etc/x", True, id="abs-dir-then-file"),
    pytest.param("/etc/x", "/etc/", True, id="abs-file-then-dir"),
    pytest.param("/etc/x", "/etc", True, id="abs-file-then-dir-no-slash"),
    pytest.param("/etc/x", "/etc/x/y", True, id="abs-name-then-below"),
    pytest.param("/etc/x/y", "/etc", True, id="abs-deep-then-top"),
    pytest.param("/", "/etc/x", True, id="abs-root-then-file"),
    pytest.param("/etc/x", "/", True, id="abs-file-then-root"),
    pytest.param("/", "etc/x", False, id="abs-root-vs-relative"),
    # siblings and look-alikes do not conflict
    pytest.param("src/auth/", "src/auth.py", False, id="dir-vs-sibling-file"),
    pytest.param("src/auth.py", "src/auth/", False, id="sibling-file-vs-dir"),
    pytest.param("src/auth/", "src/authz/x", False, id="dir-vs-prefix-sibling"),
    pytest.param("src/authz/x", "src/auth/", False, id="prefix-sibling-vs-dir"),
    pytest.param("src/auth", "src/authz", False, id="name-vs-longer-name"),
    pytest.param("src/auth/login.py", "src/auth/logout.py", False, id="files-in-one-dir"),
    pytest.param("src/auth/a/", "src/auth/b/", False, id="sibling-dirs"),
    pytest.param("a/b/c/d/e.txt", "a/b/c/d/e.txt.bak", False, id="file-vs-longer-file"),
    pytest.param("/etc/x", "/etc/xy", False, id="abs-name-vs-longer-name"),
    pytest.param("db:users", "db:users:42", False, id="colons-are-not-hierarchical"),
]


@pytest.mark.parametrize(("held", "wanted", "conflicts"), HIERARCHY)
async def test_hierarchical_conflicts(bus: AgentBus, held: str, wanted: str, conflicts: bool) -> None:
    first = await bus.locks.acquire("alice", held, ttl_seconds=30)
    assert first.acquired
    second = await bus.locks.acquire("bob", wanted, ttl_seconds=30)
    if conflicts:
        assert second.acquired is False, second
        assert second.holder == "alice"
        assert second.conflicting_resource == held
        assert second.expires_at == first.expires_at
    else:
        assert second.acquired is True, second
        assert second.holder is None
    # either way alice still holds her lock, with her tokens
    again = await bus.locks.acquire("alice", held, ttl_seconds=30)
    assert again.acquired and again.extended
    assert (again.lock_token, again.fencing_token) == (first.lock_token, first.fencing_token)


async def test_a_live_lock_below_many_expired_ones_still_conflicts(settings: Settings) -> None:
    # no reaper: expired locks stay in Redis until someone looks, as between two sweeps
    async with AgentBus.open(settings, reaper=False) as bus:
        for i in range(60):
            assert (await bus.locks.acquire("gone", f"big/f{i:03d}", ttl_seconds=0.05)).acquired
        live = await bus.locks.acquire("alice", "big/zz.txt", ttl_seconds=30)
        assert live.acquired
        await until_redis_time(bus, ms_of(live.expires_at) - 30_000 + 100)  # the 0.05 s locks expired

        whole = await bus.locks.acquire("bob", "big/", ttl_seconds=30)
        assert whole.acquired is False, "granted big/ while alice holds big/zz.txt"
        assert whole.holder == "alice" and whole.conflicting_resource == "big/zz.txt"


# --- re-acquire, release, fencing -------------------------------------------------------------------


async def test_reacquire_by_the_holder_extends_with_the_same_tokens(bus: AgentBus) -> None:
    first = await bus.locks.acquire("alice", "docs/", ttl_seconds=5)
    again = await bus.locks.acquire("alice", "docs/", ttl_seconds=30)
    assert again.acquired is True and again.extended is True
    assert again.lock_token == first.lock_token
    assert again.fencing_token == first.fencing_token
    assert ms_of(again.expires_at) > ms_of(first.expires_at)

    refused = await bus.locks.acquire("bob", "docs/readme.md")
    assert refused.acquired is False and refused.expires_at == again.expires_at

    released = await bus.locks.release("alice", "docs/", first.lock_token or "")
    assert released.released is True


async def test_fencing_token_strictly_grows_with_every_grant(bus: AgentBus) -> None:
    fences = []
    tokens = set()
    for agent in ("alice", "bob", "alice", "carol"):
        got = await bus.locks.acquire(agent, "db/schema.sql", ttl_seconds=30)
        assert got.acquired and got.lock_token and got.fencing_token is not None
        fences.append(got.fencing_token)
        tokens.add(got.lock_token)
        released = await bus.locks.release(agent, "db/schema.sql", got.lock_token)
        assert released.released is True and released.reason is None
        assert released.resource == "db/schema.sql"
    assert fences == sorted(set(fences)), fences
    assert len(tokens) == 4, "every grant has its own lock_token"


async def test_release_with_a_wrong_token_is_not_lock_owner_and_the_lock_stays(bus: AgentBus) -> None:
    got = await bus.locks.acquire("alice", "src/main.rs", ttl_seconds=30)
    assert got.lock_token

    with pytest.raises(NotLockOwner) as wrong:
        await bus.locks.release("alice", "src/main.rs", "not-the-token")
    assert wrong.value.code == "not_lock_owner"
    assert "src/main.rs" in wrong.value.message
    assert wrong.value.hint
    with pytest.raises(NotLockOwner):
        await bus.locks.release("bob", "src/main.rs", "guessed")

    still = await bus.locks.acquire("bob", "src/main.rs")
    assert still.acquired is False and still.holder == "alice"
    assert (await bus.locks.release("alice", "src/main.rs", got.lock_token)).released is True


async def test_releasing_nothing_says_why(bus: AgentBus) -> None:
    never = await bus.locks.release("alice", "never/locked", "some-token")
    assert never.released is False
    assert never.reason and "never/locked" in never.reason

    got = await bus.locks.acquire("alice", "once.txt")
    assert (await bus.locks.release("alice", "once.txt", got.lock_token or "")).released is True
    twice = await bus.locks.release("alice", "once.txt", got.lock_token or "")
    assert twice.released is False and twice.reason


# --- expiry ----------------------------------------------------------------------------------------


async def test_an_expired_lock_goes_to_the_next_agent_and_the_old_token_stops_working(bus: AgentBus) -> None:
    old = await bus.locks.acquire("alice", "build/out", ttl_seconds=0.3)
    assert old.acquired and old.lock_token and old.fencing_token is not None

    with anyio.fail_after(WAIT_BOUND):  # bob waits on the server; nobody releases, the TTL ends it
        new = await bus.locks.acquire("bob", "build/out", ttl_seconds=30, wait_seconds=4)
    assert new.acquired is True and new.extended is False
    assert new.fencing_token is not None and new.fencing_token > old.fencing_token
    assert ms_of(new.expires_at) - 30_000 >= ms_of(old.expires_at), "granted before the old lock expired"

    with pytest.raises(NotLockOwner):  # re-acquired by another: the old holder may not release it
        await bus.locks.release("alice", "build/out", old.lock_token)
    refused = await bus.locks.acquire("alice", "build/out")
    assert refused.acquired is False and refused.holder == "bob"

    assert (await bus.locks.release("bob", "build/out", new.lock_token or "")).released is True
    late = await bus.locks.release("alice", "build/out", old.lock_token)  # free now: nothing to release
    assert late.released is False and late.reason


async def test_an_expired_lock_is_taken_back_by_the_reaper(bus: AgentBus) -> None:
    await bus.presence.heartbeat("alice", ttl_seconds=60)
    got = await bus.locks.acquire("alice", "tmp/cache", ttl_seconds=0.3)
    assert await locks_of(bus, "alice") == ["tmp/cache"]

    with anyio.fail_after(WAIT_BOUND):  # the test reaper sweeps every 0.1 s
        while True:
            if not await locks_of(bus, "alice"):
                break
            await anyio.sleep(0.05)

    late = await bus.locks.release("alice", "tmp/cache", got.lock_token or "")
    assert late.released is False and late.reason
    beat = await bus.presence.heartbeat("alice")
    assert beat.locks_extended == [], "an expired lock must not come back with a heartbeat"
    other = await bus.locks.acquire("bob", "tmp/cache")
    assert other.acquired is True
    assert other.fencing_token is not None and got.fencing_token is not None
    assert other.fencing_token > got.fencing_token


# --- heartbeat and presence ------------------------------------------------------------------------


async def test_heartbeat_extends_every_lock_the_agent_holds(bus: AgentBus) -> None:
    await bus.presence.heartbeat("alice")
    a = await bus.locks.acquire("alice", "a.txt", ttl_seconds=0.5)
    d = await bus.locks.acquire("alice", "dir/", ttl_seconds=0.5)
    b = await bus.locks.acquire("bob", "b.txt", ttl_seconds=30)
    assert a.acquired and d.acquired and b.acquired
    expiry = {"a.txt": ms_of(a.expires_at), "dir/": ms_of(d.expires_at)}
    original_end = max(expiry.values())

    # keep beating well past the original TTL; the locks never lapse
    with anyio.fail_after(WAIT_BOUND):
        while await redis_ms(bus) < original_end + 700:
            beat = await bus.presence.heartbeat("alice")
            extended = {lock.resource: ms_of(lock.expires_at) for lock in beat.locks_extended}
            assert set(extended) == {"a.txt", "dir/"}, beat.locks_extended
            assert sorted(beat.agent.locks) == ["a.txt", "dir/"]
            for resource, expires in extended.items():
                assert expires >= expiry[resource]
                expiry[resource] = expires
            refused = await bus.locks.acquire("carol", "dir/sub/file")
            assert refused.acquired is False and refused.holder == "alice"
            await anyio.sleep(0.1)
    assert expiry["a.txt"] > ms_of(a.expires_at) + 500

    # the lock tokens are unchanged, and bob's lock was not extended by alice's heartbeat
    assert (await bus.locks.release("alice", "a.txt", a.lock_token or "")).released is True
    assert (await bus.locks.release("alice", "dir/", d.lock_token or "")).released is True
    bob_beat = await bus.presence.heartbeat("bob")
    assert [lock.resource for lock in bob_beat.locks_extended] == ["b.txt"]
    assert (await bus.presence.heartbeat("alice")).locks_extended == []


async def test_list_agents_shows_the_locks_each_agent_holds(bus: AgentBus) -> None:
    await bus.presence.heartbeat("alice")
    await bus.presence.heartbeat("bob")
    one = await bus.locks.acquire("alice", "z/one.py")
    two = await bus.locks.acquire("alice", "a/two.py")
    three = await bus.locks.acquire("bob", "m/three.py")
    assert one.acquired and two.acquired and three.acquired

    assert await locks_of(bus, "alice") == ["a/two.py", "z/one.py"]
    assert await locks_of(bus, "bob") == ["m/three.py"]

    await bus.locks.release("alice", "z/one.py", one.lock_token or "")
    assert await locks_of(bus, "alice") == ["a/two.py"]
    assert await locks_of(bus, "bob") == ["m/three.py"]


# --- waiting ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["same-bus", "other-bus"])
async def test_a_waiter_wakes_when_the_holder_releases(settings: Settings, where: str) -> None:
    got: dict[str, LockResult] = {}
    async with AgentBus.open(settings) as holder_bus, AgentBus.open(settings) as other_bus:
        waiter_bus = holder_bus if where == "same-bus" else other_bus
        held = await holder_bus.locks.acquire("alice", "api/", ttl_seconds=60)
        assert held.acquired and held.lock_token

        async def wait_for_it(done: anyio.Event) -> None:
            got["bob"] = await waiter_bus.locks.acquire(
                "bob", "api/routes.py", ttl_seconds=30, wait_seconds=4
            )
            done.set()

        done = anyio.Event()
        with anyio.fail_after(WAIT_BOUND):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_for_it, done)
                await until_waiters(holder_bus, "api/routes.py", 1)
                assert (await holder_bus.locks.release("alice", "api/", held.lock_token)).released
                # the lock would last 60 s and bob would wait 4 s: only the release explains a wake-up now
                with anyio.fail_after(1):
                    await done.wait()

    bob = got["bob"]
    assert bob.acquired is True and bob.extended is False
    assert bob.lock_token and bob.fencing_token is not None


async def test_a_waiter_goes_before_a_newcomer(bus: AgentBus) -> None:
    held = await bus.locks.acquire("alice", "deploy", ttl_seconds=60)
    assert held.lock_token
    results: dict[str, LockResult] = {}

    async def wait_for_it(agent: str) -> None:
        results[agent] = await bus.locks.acquire(agent, "deploy", ttl_seconds=60, wait_seconds=3)

    with anyio.fail_after(WAIT_BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_it, "w")
            await until_waiters(bus, "deploy", 1)
            assert (await bus.locks.release("alice", "deploy", held.lock_token)).released
            # right after the release, before or after w has retried: the newcomer never jumps the queue
            newcomer = await bus.locks.acquire("n", "deploy", ttl_seconds=60)

    assert newcomer.acquired is False, newcomer
    assert newcomer.holder == "w"
    assert results["w"].acquired is True
    refused_later = await bus.locks.acquire("n", "deploy")
    assert refused_later.acquired is False and refused_later.holder == "w"


async def test_waiters_are_served_in_arrival_order(bus: AgentBus) -> None:
    held = await bus.locks.acquire("alice", "queue/", ttl_seconds=60)
    assert held.lock_token
    grants: list[tuple[str, int]] = []
    tokens: dict[str, str] = {}
    granted = anyio.Event()

    async def wait_for_it(agent: str) -> None:
        got = await bus.locks.acquire(agent, "queue/item", ttl_seconds=60, wait_seconds=4)
        assert got.acquired and got.lock_token and got.fencing_token is not None, got
        grants.append((agent, got.fencing_token))
        tokens[agent] = got.lock_token
        granted.set()

    with anyio.fail_after(WAIT_BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_it, "first")
            await until_waiters(bus, "queue/item", 1)
            tg.start_soon(wait_for_it, "second")
            await until_waiters(bus, "queue/item", 2)
            assert (await bus.locks.release("alice", "queue/", held.lock_token)).released
            await granted.wait()
            assert [agent for agent, _ in grants] == ["first"]
            assert (await bus.locks.release("first", "queue/item", tokens["first"])).released

    assert [agent for agent, _ in grants] == ["first", "second"]
    assert grants[0][1] < grants[1][1]


async def test_a_cancelled_waiter_leaves_the_queue(bus: AgentBus) -> None:
    held = await bus.locks.acquire("alice", "shared.cfg", ttl_seconds=60)
    assert held.lock_token
    outcome: list[LockResult] = []
    waiting = anyio.Event()

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        waiting.set()  # sent from the wait itself: bob is past his first attempt, parked in the queue

    async def wait_until_cancelled(scopes: list[anyio.CancelScope]) -> None:
        with anyio.move_on_after(30) as scope:
            scopes.append(scope)
            outcome.append(
                await bus.locks.acquire(
                    "bob", "shared.cfg", ttl_seconds=60, wait_seconds=4, on_progress=on_progress
                )
            )

    with anyio.fail_after(WAIT_BOUND):
        scopes: list[anyio.CancelScope] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_until_cancelled, scopes)
            await waiting.wait()
            assert (await probe(bus, "shared.cfg")).waiters == 1
            scopes[0].cancel()  # the client went away mid-wait
        assert outcome == []
        assert (await probe(bus, "shared.cfg")).waiters == 0
        assert (await bus.locks.release("alice", "shared.cfg", held.lock_token)).released
        carol = await bus.locks.acquire("carol", "shared.cfg")
    assert carol.acquired is True, "the cancelled waiter still blocks the queue"


async def test_a_waiter_cancelled_during_its_first_attempt_keeps_no_place_in_the_queue(bus: AgentBus) -> None:
    held = await bus.locks.acquire("alice", "queued.cfg", ttl_seconds=60)
    assert held.lock_token
    with anyio.CancelScope() as scope:
        scope.cancel()  # the first attempt's script runs shielded, then the cancellation lands
        await bus.locks.acquire("bob", "queued.cfg", ttl_seconds=60, wait_seconds=4)
    assert scope.cancelled_caught
    assert (await bus.locks.release("alice", "queued.cfg", held.lock_token)).released
    carol = await bus.locks.acquire("carol", "queued.cfg")
    assert carol.acquired is True, carol  # refused: "queued.cfg is free, but bob has been waiting…"


async def test_an_acquire_cancelled_during_its_script_leaves_no_lock(bus: AgentBus) -> None:
    with anyio.CancelScope() as scope:
        scope.cancel()  # cancelled before the script returns: it runs shielded, then is undone
        await bus.locks.acquire("alice", "raced.txt", ttl_seconds=60)
    assert scope.cancelled_caught
    got = await bus.locks.acquire("bob", "raced.txt")
    assert got.acquired is True, got
    assert got.fencing_token == 2, "the undone grant still used up a fencing token"


async def test_a_wait_that_runs_out_is_refused_and_leaves_the_queue(bus: AgentBus) -> None:
    held = await bus.locks.acquire("alice", "slow", ttl_seconds=60)
    with anyio.fail_after(WAIT_BOUND):
        timed_out = await bus.locks.acquire("bob", "slow", wait_seconds=0.3)
    assert timed_out.acquired is False and timed_out.holder == "alice"
    assert (await probe(bus, "slow")).waiters == 0
    assert (await bus.locks.release("alice", "slow", held.lock_token or "")).released
    assert (await bus.locks.acquire("carol", "slow")).acquired is True


async def test_a_wait_above_the_cap_is_capped_with_a_notice(settings: Settings) -> None:
    capped = settings.model_copy(update={"max_wait_seconds": 0.3})
    async with AgentBus.open(capped) as bus:
        await bus.locks.acquire("alice", "capped", ttl_seconds=60)
        with anyio.fail_after(WAIT_BOUND):
            refused = await bus.locks.acquire("bob", "capped", wait_seconds=60)
    assert refused.acquired is False
    assert len(refused.notices) == 1 and "cap" in refused.notices[0]


async def test_waiting_reports_progress(bus: AgentBus) -> None:
    await bus.locks.acquire("alice", "busy", ttl_seconds=60)
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        updates.append((done, total, message))

    with anyio.fail_after(WAIT_BOUND):
        refused = await bus.locks.acquire("bob", "busy", wait_seconds=1.5, on_progress=on_progress)
    assert refused.acquired is False
    assert updates, "no progress during a 1.5 s wait"
    for done, total, message in updates:
        assert total == 1.5 and 0 <= done <= total
        assert message is not None and "busy" in message


# --- bad input -------------------------------------------------------------------------------------

BAD_ACQUIRE: list[Any] = [
    pytest.param({"agent": "bad agent"}, "agent", id="bad-agent"),
    pytest.param({"agent": ""}, "agent", id="empty-agent"),
    pytest.param({"resource": ""}, "resource", id="empty-resource"),
    pytest.param({"resource": "a\nb"}, "resource", id="newline"),
    pytest.param({"resource": "a\tb"}, "resource", id="tab"),
    pytest.param({"resource": "a\x00b"}, "resource", id="nul"),
    pytest.param({"resource": "a\x7fb"}, "resource", id="del"),
    pytest.param({"resource": "x" * 513}, "resource", id="resource-513"),
    pytest.param({"ttl_seconds": 0}, "ttl_seconds", id="ttl-0"),
    pytest.param({"ttl_seconds": -1}, "ttl_seconds", id="ttl-negative"),
    pytest.param({"wait_seconds": -1}, "wait_seconds", id="wait-negative"),
    pytest.param(
        {"ttl_seconds": float("nan")},
        "ttl_seconds",
        id="ttl-nan",
    ),
    pytest.param(
        {"ttl_seconds": float("inf")},
        "ttl_seconds",
        id="ttl-inf",
    ),
    pytest.param(
        {"wait_seconds": float("nan")},
        "wait_seconds",
        id="wait-nan",
    ),
]


@pytest.mark.parametrize(("override", "field"), BAD_ACQUIRE)
async def test_acquire_refuses_bad_input(bus: AgentBus, override: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"agent": "alice", "resource": "ok/path", "ttl_seconds": 30, "wait_seconds": 0}
    args |= override
    agent, resource = args.pop("agent"), args.pop("resource")
    with pytest.raises(InvalidArgument) as refused:
        await bus.locks.acquire(agent, resource, **args)
    assert field in refused.value.message
    assert refused.value.code == "invalid_argument"
    assert (await bus.locks.acquire("bob", "ok/path")).acquired is True, "a refused call locked something"


@pytest.mark.parametrize(
    ("agent", "resource"),
    [("bad agent", "ok"), ("alice", ""), ("alice", "a\nb"), ("alice", "x" * 513)],
    ids=["bad-agent", "empty-resource", "newline", "resource-513"],
)
async def test_release_refuses_bad_input(bus: AgentBus, agent: str, resource: str) -> None:
    with pytest.raises(InvalidArgument):
        await bus.locks.release(agent, resource, "token")


async def test_the_longest_resource_name_is_accepted(bus: AgentBus) -> None:
    name = "d/" + "x" * 510
    got = await bus.locks.acquire("alice", name)
    assert got.acquired and got.resource == name
    assert (await bus.locks.release("alice", name, got.lock_token or "")).released


# --- the race --------------------------------------------------------------------------------------


@dataclass
class Grant:
    agent: str
    fence: int
    start_ms: int  # Redis time of the grant
    end_ms: float  # the holder still held it up to here: min(just before its release, its expiry)
    paused: bool
    outcome: str  # of its release: released | not_lock_owner | nothing
    release_from_ms: int  # Redis time just before its release was sent


async def test_fifty_agents_contending_never_hold_the_lock_together(settings: Settings) -> None:
    """50 agents on 5 bus instances, 2 grants each, one resource with a 0.2 s TTL; every tenth agent
    pauses past its TTL before releasing. Every grant is recorded with its Redis-time window."""
    resource, ttl, ttl_ms = "hot/spot.txt", 0.2, 200
    agents, rounds, instances = 50, 2, 5
    grants: list[Grant] = []

    async def contend(bus: AgentBus, index: int) -> None:
        name = f"agent-{index:02d}"
        paused = index % 10 == 0
        wait = (0.5, 1.0, 2.0)[index % 3]
        for _ in range(rounds):
            while True:
                got = await bus.locks.acquire(name, resource, ttl_seconds=ttl, wait_seconds=wait)
                if got.acquired:
                    break
                assert got.holder, got  # a refusal names who is in the way
            assert got.lock_token and got.fencing_token is not None
            start = ms_of(got.expires_at) - ttl_ms
            await anyio.sleep(0.3 if paused else 0)  # a paused holder sleeps past its TTL
            # Redis time just before the release: the holder surely held the lock up to then (or to
            # its expiry). Time read after the release could already lie past the next grant.
            before = math.floor(await redis_ms(bus))
            try:
                released = await bus.locks.release(name, resource, got.lock_token)
                outcome = "released" if released.released else "nothing"
            except NotLockOwner:
                outcome = "not_lock_owner"
            end = min(before, ms_of(got.expires_at))
            grants.append(Grant(name, got.fencing_token, start, end, paused, outcome, before))

    with anyio.fail_after(60):
        async with AsyncExitStack() as stack:
            buses = [await stack.enter_async_context(AgentBus.open(settings)) for _ in range(instances)]
            async with anyio.create_task_group() as tg:
                for index in range(agents):
                    tg.start_soon(contend, buses[index % instances], index)

    assert len(grants) == agents * rounds
    by_fence = sorted(grants, key=lambda g: g.fence)
    fences = [g.fence for g in by_fence]
    assert fences == list(range(1, agents * rounds + 1)), "fencing tokens must be unique and strictly grow"
    # grant order (Redis time) agrees with fencing order
    starts = [g.start_ms for g in by_fence]
    assert starts == sorted(starts)
    # never two holders at once: every window ends before the next grant starts
    for earlier, later in itertools.pairwise(by_fence):
        assert later.start_ms >= earlier.end_ms, (earlier, later)
    for i, a in enumerate(by_fence):
        for b in by_fence[i + 1 :]:
            assert not (a.start_ms < b.end_ms and b.start_ms < a.end_ms), (a, b)
    # nobody can release a lock that was granted again meanwhile (late releases of paused holders)
    for g in by_fence:
        if g.outcome == "released":
            regranted = [h for h in by_fence if h.fence > g.fence and h.start_ms < g.release_from_ms]
            assert not regranted, (g, regranted[:1])
    paused = [g for g in grants if g.paused]
    assert len(paused) == 10
    assert any(g.outcome != "released" for g in paused), "no paused holder lost its lock to a waiter"
    assert sum(g.outcome == "released" for g in grants if not g.paused) > 0


@pytest.mark.parametrize("spelling", ["./notes.md", "docs/../notes.md", ".//notes.md"])
async def test_one_path_spelled_another_way_is_the_same_lock(bus: AgentBus, spelling: str) -> None:
    first = await bus.locks.acquire("a1", "notes.md", ttl_seconds=30)
    assert first.acquired
    refused = await bus.locks.acquire("a2", spelling, ttl_seconds=30)
    assert not refused.acquired and refused.holder == "a1" and refused.conflicting_resource == "notes.md"
    again = await bus.locks.acquire("a1", spelling, ttl_seconds=30)
    assert again.acquired and again.extended and again.resource == "notes.md"
    assert again.fencing_token == first.fencing_token
    released = await bus.locks.release("a1", spelling, again.lock_token or "")
    assert released.released and released.resource == "notes.md"


@pytest.mark.parametrize(
    ("held", "wanted"), [("docs/caf\u00e9.md", "docs/cafe\u0301.md"), ("cafe\u0301/", "caf\u00e9/x.py")]
)
async def test_a_name_composed_or_decomposed_is_one_lock(bus: AgentBus, held: str, wanted: str) -> None:
    """macOS lists file names decomposed (e + a combining accent), most editors type them composed."""
    first = await bus.locks.acquire("a1", held, ttl_seconds=30)
    assert first.acquired and first.resource == unicodedata.normalize("NFC", held)
    refused = await bus.locks.acquire("a2", wanted, ttl_seconds=30)
    assert not refused.acquired and refused.conflicting_resource == first.resource


async def test_a_directory_spelled_another_way_covers_its_files(bus: AgentBus) -> None:
    held = await bus.locks.acquire("a1", "src/./auth//", ttl_seconds=30)
    assert held.acquired and held.resource == "src/auth/"
    refused = await bus.locks.acquire("a2", "src/auth/login.py", ttl_seconds=30)
    assert not refused.acquired and refused.conflicting_resource == "src/auth/"


@pytest.mark.parametrize(
    ("resource", "says"), [("../x", "climbs above"), ("src/../../x", "climbs above"), (".", "names no")]
)
async def test_a_path_above_its_start_or_naming_nothing_is_refused(
    bus: AgentBus, resource: str, says: str
) -> None:
    with pytest.raises(InvalidArgument, match=says):
        await bus.locks.acquire("a1", resource)
    assert (await bus.locks.held()).locks == []


async def test_an_identifier_with_a_trailing_newline_is_refused(bus: AgentBus) -> None:
    with pytest.raises(InvalidArgument, match="agent id"):
        await bus.locks.acquire("a1\n", "notes.md")
    assert (await bus.locks.held()).locks == []
