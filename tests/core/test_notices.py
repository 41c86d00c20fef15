"""Notices: what a watched call tells its agent along with its result — unread messages, leases and
locks about to expire, and those taken back (each told once) — at no extra round trip."""

from __future__ import annotations

import anyio
import pytest
from helpers import WAIT_BOUND, ms_of, until_redis_time

from mcp_agentbus.context import Caller, Watch
from mcp_agentbus.core import notices
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.ids import MAX_REPLY_BYTES
from mcp_agentbus.redis.replies import READ_INBOX
from mcp_agentbus.redis.scripts import source
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio


async def watched(bus: AgentBus, agent: str = "a", *, unread: bool = True) -> list[str]:
    """The notices `agent` gets with a harmless call of its own (publishing an event)."""
    watch = Watch(agent, unread=unread)
    as_agent = bus.acting(Caller(watch))
    await as_agent.events.publish(agent, "probe.call")
    assert watch.state is not None, "a watched call collects the notices"
    return notices.lines(watch)


async def claim_one(bus: AgentBus, agent: str, lease_seconds: float) -> tuple[str, int]:
    """Create and claim a task; its id and lease expiry (Redis ms)."""
    created = await bus.tasks.create("planner", title=f"lease {lease_seconds}")
    claim = await bus.tasks.claim(agent, task_id=created.task_id, lease_seconds=lease_seconds)
    assert claim.task is not None and claim.lease is not None
    return claim.task.id, ms_of(claim.lease.expires_at)


# --- unread messages ---------------------------------------------------------------------------------


async def test_unread_messages_are_noticed_with_the_newest_sender_and_subject(bus: AgentBus) -> None:
    assert await watched(bus) == [], "nothing to tell yet"
    await bus.inbox.send("bob", "a", "first body", subject="first")
    await bus.inbox.send("carol", "a", "second body", subject="build broke")
    assert await watched(bus) == [
        "2 unread message(s) in your inbox, newest from carol: 'build broke' (read_inbox)."
    ]


async def test_without_a_subject_the_notice_quotes_the_start_of_the_body(bus: AgentBus) -> None:
    await bus.inbox.send("bob", "a", "short\n  and   spaced")
    assert await watched(bus) == [
        "1 unread message(s) in your inbox, newest from bob: 'short and spaced' (read_inbox)."
    ]

    long_body = "word " * 40
    await bus.inbox.send("carol", "a", long_body)
    (line,) = await watched(bus)
    quoted = line.split("newest from carol: ", 1)[1].removesuffix(" (read_inbox).")
    assert quoted.startswith("'word word") and quoted.endswith("…'")
    assert len(quoted.strip("'")) == 80, "quoted up to 80 characters"


async def test_the_unread_notice_follows_the_inbox(bus: AgentBus) -> None:
    for n in range(3):
        await bus.inbox.send("bob", "a", f"n{n}", subject=f"s{n}")
    assert (await watched(bus))[0].startswith("3 unread")
    await bus.inbox.read("a", limit=2)
    assert (await watched(bus))[0].startswith("1 unread")
    await bus.inbox.read("a")
    assert await watched(bus) == []
    assert await watched(bus, "bob") == [], "notices are the watched agent's own"


async def test_a_watched_read_of_the_events_brings_the_notices_itself(bus: AgentBus) -> None:
    """read_events reads with a script, so its notices come in the same round trip (no clock script
    after it, `AgentBus.gather_notices`)."""
    await bus.inbox.send("bob", "a", "hello", subject="hi")
    watch = Watch("a")
    read = await bus.acting(Caller(watch)).events.read(after="0", topics=["message.*"])
    assert [e.topic for e in read.events] == ["message.sent"]
    assert notices.lines(watch) == ["1 unread message(s) in your inbox, newest from bob: 'hi' (read_inbox)."]


async def test_notices_run_after_the_calls_own_script(bus: AgentBus) -> None:
    await bus.inbox.send("bob", "a", "hello")
    watch = Watch("a")
    as_agent = bus.acting(Caller(watch))
    got = await as_agent.inbox.read("a")
    assert [m.body for m in got.messages] == ["hello"]
    assert notices.lines(watch) == [], "the read already emptied the inbox the notices looked at"

    watch = Watch("a")
    as_agent = bus.acting(Caller(watch))
    await as_agent.inbox.send("bob", "a", "in the same call", subject="now")
    assert notices.lines(watch) == ["1 unread message(s) in your inbox, newest from bob: 'now' (read_inbox)."]


async def test_unread_false_leaves_the_unread_notice_out(bus: AgentBus) -> None:
    await bus.inbox.send("bob", "a", "hi", subject="hello")
    assert await watched(bus, unread=False) == []
    assert len(await watched(bus)) == 1, "the message is still unread"


async def test_a_heartbeat_counts_unread_messages(bus: AgentBus) -> None:
    assert (await bus.presence.heartbeat("a")).unread_messages == 0
    for n in range(3):
        await bus.inbox.send("bob", "a", f"n{n}")
    await bus.inbox.send("bob", "other", "not for a")
    assert (await bus.presence.heartbeat("a")).unread_messages == 3
    await bus.inbox.read("a", peek=True)
    assert (await bus.presence.heartbeat("a")).unread_messages == 3, "a peek leaves them unread"
    await bus.inbox.read("a", limit=2)
    assert (await bus.presence.heartbeat("a")).unread_messages == 1


# --- leases and locks about to expire ---------------------------------------------------------------


async def test_a_lease_about_to_expire_is_noticed_and_a_long_one_is_not(settings: Settings) -> None:
    # no reaper: the short lease must still be held when the notice is asked for
    async with AgentBus.open(settings, reaper=False) as bus:
        long_id, _ = await claim_one(bus, "a", lease_seconds=300)
        short_id, short_expiry = await claim_one(bus, "a", lease_seconds=2)
        assert await watched(bus) == [], "a fresh lease has more than half its time left"

        await until_redis_time(bus, short_expiry - 900)  # less than half of the 2 s left
        lines = await watched(bus)
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"Your lease on task {short_id} expires in ")
        assert "heartbeat to keep it" in lines[0]
        assert long_id not in lines[0]
        assert await watched(bus, "b") == [], "the notice is for the holder only"


async def test_a_heartbeat_renews_the_lease_so_it_is_no_longer_noticed(settings: Settings) -> None:
    async with AgentBus.open(settings, reaper=False) as bus:
        _, expiry = await claim_one(bus, "a", lease_seconds=2)
        await until_redis_time(bus, expiry - 900)
        assert len(await watched(bus)) == 1
        watch = Watch("a")
        as_agent = bus.acting(Caller(watch))
        beat = await as_agent.presence.heartbeat("a")
        assert len(beat.leases_extended) == 1
        assert notices.lines(watch) == [], "the heartbeat extended the lease before the notices looked"


async def test_a_lock_about_to_expire_is_noticed_and_a_long_one_is_not(settings: Settings) -> None:
    async with AgentBus.open(settings, reaper=False) as bus:
        long = await bus.locks.acquire("a", "docs/", ttl_seconds=300)
        short = await bus.locks.acquire("a", "src/app.py", ttl_seconds=2)
        assert long.acquired and short.acquired
        assert await watched(bus) == []

        await until_redis_time(bus, ms_of(short.expires_at) - 900)
        lines = await watched(bus)
        assert len(lines) == 1, lines
        assert lines[0].startswith("Your lock on src/app.py expires in ")
        assert await watched(bus, "b") == []


# --- taken back, told once ---------------------------------------------------------------------------


async def test_a_lease_taken_back_by_the_reaper_is_told_once(bus: AgentBus) -> None:
    task_id, expiry = await claim_one(bus, "a", lease_seconds=1)
    await until_redis_time(bus, expiry + 100)
    await bus.reaper.sweep()  # the background reaper may have been first; either way it is taken back

    lines = await watched(bus)
    assert len(lines) == 1, lines
    assert f"lease on task {task_id} expired" in lines[0] and "taken back" in lines[0]
    assert await watched(bus) == [], "told once"

    again = await bus.tasks.claim("b", task_id=task_id)
    assert again.task is not None and again.task.attempt == 2


async def test_an_expired_lock_is_told_once(bus: AgentBus) -> None:
    lock = await bus.locks.acquire("a", "db/users", ttl_seconds=1)
    assert lock.acquired
    await until_redis_time(bus, ms_of(lock.expires_at) + 100)
    await bus.reaper.sweep()

    lines = await watched(bus)
    assert lines == ["Your lock on db/users expired and was taken back: re-acquire it before writing more."]
    assert await watched(bus) == []
    assert (await bus.locks.acquire("b", "db/users")).acquired


async def test_a_lock_taken_over_after_expiry_tells_the_old_holder(settings: Settings) -> None:
    # no reaper: the expired lock is taken back by the next acquire that meets it
    async with AgentBus.open(settings, reaper=False) as bus:
        lock = await bus.locks.acquire("a", "cache", ttl_seconds=0.2)
        await until_redis_time(bus, ms_of(lock.expires_at) + 50)
        assert (await bus.locks.acquire("b", "cache")).acquired
        (line,) = await watched(bus)
        assert "lock on cache expired" in line
        assert await watched(bus) == []
        assert await watched(bus, "b") == []


async def test_what_was_taken_back_waits_for_a_watched_call(bus: AgentBus) -> None:
    task_id, expiry = await claim_one(bus, "a", lease_seconds=1)
    lock = await bus.locks.acquire("a", "shared/", ttl_seconds=1)
    await until_redis_time(bus, max(expiry, ms_of(lock.expires_at)) + 100)
    await bus.reaper.sweep()

    # calls that are not watched run as before and consume nothing
    await bus.events.publish("a", "unwatched")
    await bus.presence.heartbeat("a")
    await bus.inbox.send("bob", "a", "hi", subject="ping")

    lines = await watched(bus)
    assert len(lines) == 3, lines
    assert lines[0].startswith("1 unread message(s)")
    assert any(f"task {task_id} expired" in line for line in lines[1:])
    assert any("lock on shared/ expired" in line for line in lines[1:])
    assert len(await watched(bus)) == 1, "only the unread message is still news"


# --- watching --------------------------------------------------------------------------------------


async def test_without_watching_the_store_runs_as_before(bus: AgentBus) -> None:
    await bus.inbox.send("bob", "a", "hi", subject="hello")
    assert bus.store.caller.watch is None
    reply = await bus.store.run(READ_INBOX, "a", 20, "1", "", MAX_REPLY_BYTES)
    assert [m.body for m in reply.entries] == ["hi"] and reply.unread_remaining == 1

    watch = Watch("a")
    as_agent = bus.acting(Caller(watch))
    watched_reply = await as_agent.store.run(READ_INBOX, "a", 20, "1", "", MAX_REPLY_BYTES)
    assert watched_reply == reply, "a watched call gets the same reply; the notices go to the watch"
    assert notices.lines(watch) == [
        "1 unread message(s) in your inbox, newest from bob: 'hello' (read_inbox)."
    ]

    got = await bus.inbox.read("a")
    assert got.notices == [], "the core API adds no notices of its own"
    assert notices.lines(None) == []
    assert notices.lines(Watch("a")) == [], "a watch that saw no call has nothing to say"


async def test_views_of_the_bus_gather_for_their_own_caller_and_leave_the_bus_as_it_was(
    bus: AgentBus,
) -> None:
    await bus.inbox.send("bob", "a", "for a", subject="to-a")
    await bus.inbox.send("bob", "c", "for c", subject="to-c")
    await bus.events.publish("bob", "probe.before")  # the bus has made its own events service first
    outer, inner = Watch("a"), Watch("c")
    for_outer, for_inner = bus.acting(Caller(outer)), bus.acting(Caller(inner))
    await for_inner.events.publish("c", "probe.call")
    assert outer.state is None, "the call through the other view was made for c only"
    await for_outer.events.publish("a", "probe.call")
    assert bus.store.caller.watch is None, "the bus itself acts for no one"
    assert for_outer.wakeups is bus.wakeups and for_outer.redis is bus.redis, "a view shares the bus"
    assert notices.lines(inner) == [
        "1 unread message(s) in your inbox, newest from bob: 'to-c' (read_inbox)."
    ]
    assert notices.lines(outer) == [
        "1 unread message(s) in your inbox, newest from bob: 'to-a' (read_inbox)."
    ]


async def test_concurrent_watched_calls_get_their_own_notices(bus: AgentBus) -> None:
    for agent in ("a", "b", "c"):
        await bus.inbox.send("sender", agent, "x", subject=f"for {agent}")
    got: dict[str, list[str]] = {}

    async def call(agent: str) -> None:
        got[agent] = await watched(bus, agent)

    with anyio.fail_after(WAIT_BOUND):
        async with anyio.create_task_group() as tg:
            for agent in ("a", "b", "c"):
                tg.start_soon(call, agent)
    for agent in ("a", "b", "c"):
        assert got[agent] == [
            f"1 unread message(s) in your inbox, newest from sender: 'for {agent}' (read_inbox)."
        ]


# --- scripts Redis has forgotten --------------------------------------------------------------------


def real_redis_only(bus: AgentBus) -> None:
    if bus.settings.redis_url.startswith("memory://"):
        pytest.skip("SCRIPT FLUSH is a real-Redis matter")


async def test_a_watched_call_reloads_every_script_after_script_flush(bus: AgentBus) -> None:
    real_redis_only(bus)
    await bus.inbox.send("bob", "a", "hi", subject="still here")
    await bus.redis.script_flush()
    sha = bus.store.scripts.shas["publish_event"]
    assert (await bus.redis.script_exists(sha)) == [False]

    lines = await watched(bus)
    assert lines == ["1 unread message(s) in your inbox, newest from bob: 'still here' (read_inbox)."]
    assert (await bus.redis.script_exists(sha)) == [True]
    probes = await bus.events.read(after="0", topics=["probe.*"])
    assert len(probes.events) == 1, "the call's own script ran once"


async def test_a_call_whose_own_script_was_reloaded_runs_once_with_its_notices(bus: AgentBus) -> None:
    real_redis_only(bus)
    await bus.inbox.send("bob", "a", "hi", subject="still here")
    await bus.redis.script_flush()
    await bus.redis.script_load(source("publish_event"))  # only the call's own script is known again

    lines = await watched(bus)
    assert lines == ["1 unread message(s) in your inbox, newest from bob: 'still here' (read_inbox)."]
    probes = await bus.events.read(after="0", topics=["probe.*"])
    assert len(probes.events) == 1, "the call's own script, which had run, was not run again"
