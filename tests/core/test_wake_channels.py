"""Narrow wake-up channels, subscribed on demand: a process listens to a topic's channel only while
something in it waits or follows there, and no wake-up is lost while waiters come and go."""

from __future__ import annotations

import random
from collections import defaultdict
from functools import partial
from typing import Any

import anyio
import pytest
from helpers import ALSO_ON_CLUSTER, fresh_settings
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.wakeups import lock_topics
from mcp_agentbus.redis.connection import connect
from mcp_agentbus.redis.keys import WAKE_TOPIC_MAX
from mcp_agentbus.server.push import topics_for
from mcp_agentbus.server.resources import changed_by

pytestmark = [pytest.mark.anyio, ALSO_ON_CLUSTER]

WAIT = 60  # seconds: far beyond every bound below, so only a wake-up ends a wait in time


async def channels_on_server(bus: AgentBus) -> set[str]:
    """The namespace's channels that some connection subscribes to, on every node."""
    redis = bus.redis
    if isinstance(redis, RedisCluster):
        names: list[Any] = await redis.execute_command(  # the nodes' replies, merged
            "PUBSUB SHARDCHANNELS", target_nodes=RedisCluster.ALL_NODES
        )
    else:
        names = await redis.pubsub_channels()
    return {name for name in names if name.startswith(bus.store.keys.prefix)}


async def until_subscribed(bus: AgentBus, expected: set[str]) -> None:
    with anyio.fail_after(10):
        while True:  # polled: Redis tells no one when a subscription goes
            if await channels_on_server(bus) == expected:
                return
            await anyio.sleep(0.02)


async def test_an_idle_bus_subscribes_to_nothing_and_a_wait_only_to_its_own_channels(redis_url: str) -> None:
    async with AgentBus.open(fresh_settings(redis_url, max_wait_seconds=WAIT)) as bus:
        await bus.tasks.create("boss", title="warm-up", capability="build")  # hints fly, nobody listens
        await until_subscribed(bus, set())
        assert bus.wakeups.subscriptions == 0
        async with anyio.create_task_group() as tg:
            got: list[Any] = []

            async def wait_for_key() -> None:
                got.append(await bus.state.get("cfg", after_version=0, wait_seconds=WAIT, agent="w"))

            tg.start_soon(wait_for_key)
            keys = bus.store.keys
            await until_subscribed(bus, {keys.wake("state:cfg"), keys.wake("message:w"), keys.wake("lost:w")})
            with anyio.fail_after(10):
                await bus.state.set("boss", "cfg", value=1)
        assert got[0].entries[0].version == 1
        await until_subscribed(bus, set())
        assert bus.wakeups.subscriptions == 0


async def test_no_wake_up_is_lost_while_waiters_subscribe_and_unsubscribe_around_the_changes(
    redis_url: str,
) -> None:
    """Groups of waiters on a key each (the same channel within a group, different ones across) enter and
    leave at random moments around one change per round: each waiter must see its round's change long
    before its wait would end, though no later change could rescue a lost wake-up."""
    groups, waiters, rounds = 4, 5, 12
    rng = random.Random(18)
    async with AgentBus.open(fresh_settings(redis_url, max_wait_seconds=WAIT)) as bus:

        async def waiter(key: str, seen: int) -> None:
            await anyio.sleep(rng.random() * 0.004)
            got = await bus.state.get(key, after_version=seen, wait_seconds=WAIT)
            assert got.entries[0].version > seen

        async def group(g: int) -> None:
            key = f"k{g}"
            for version in range(rounds):
                async with anyio.create_task_group() as tg:
                    for _ in range(waiters):
                        tg.start_soon(waiter, key, version)
                    await anyio.sleep(rng.random() * 0.004)
                    await bus.state.set("setter", key, value=version + 1)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for g in range(groups):
                    tg.start_soon(group, g)
        await until_subscribed(bus, set())


async def test_a_change_made_while_a_subscription_is_on_its_way_still_ends_the_wait(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subscribe commands are held back a moment; a change made meanwhile publishes to nobody. The
    wait looks only once Redis confirmed its subscription, so it sees that change at once."""
    for name in ("subscribe", "ssubscribe"):
        real = getattr(PubSub, name)

        async def slow(pubsub: PubSub, *channels: Any, real: Any = real) -> Any:
            await anyio.sleep(0.3)
            return await real(pubsub, *channels)

        monkeypatch.setattr(PubSub, name, slow)
    async with AgentBus.open(fresh_settings(redis_url, max_wait_seconds=WAIT)) as bus:
        async with anyio.create_task_group() as tg:
            got: list[Any] = []
            done = anyio.Event()

            async def wait_for_key() -> None:
                got.append(await bus.state.get("cfg", after_version=0, wait_seconds=WAIT))
                done.set()

            tg.start_soon(wait_for_key)
            await anyio.sleep(0.1)
            await bus.state.set("boss", "cfg", value=1)  # no subscriber hears it
            with anyio.fail_after(5):
                await done.wait()
        assert got[0].entries[0].version == 1


async def test_a_claimer_cancelled_while_it_subscribes_hands_on_the_task_it_was_woken_for(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ready task's hint wakes one claimer: the longest waiting, here one whose own channels are still
    being subscribed (held back) when its client goes away. It hands the hint on as it leaves, so the
    claimer sleeping behind it takes the task at once rather than at the end of its wait."""
    gate = anyio.Event()
    for name in ("subscribe", "ssubscribe"):
        real = getattr(PubSub, name)

        async def held(pubsub: PubSub, *channels: Any, real: Any = real) -> Any:
            if any("leaver" in str(channel) for channel in channels):
                await gate.wait()
            return await real(pubsub, *channels)

        monkeypatch.setattr(PubSub, name, held)
    settings = fresh_settings(redis_url, max_wait_seconds=WAIT)
    async with AgentBus.open(settings) as bus, AgentBus.open(settings) as boss:
        # The channels "other" waits on are subscribed already (as another waiter's would be), so it
        # looks at once, finds nothing and sleeps, while "leaver", which came first, is still entering.
        kept = bus.wakeups.follow(
            ["task:build", "task:@other", "message:other", "lost:other"], lambda _: None, lambda: None
        )
        await kept.confirmed()
        got: list[Any] = []
        leaving = anyio.CancelScope()

        async def claim(agent: str) -> None:
            got.append(await bus.tasks.claim(agent, capabilities=["build"], wait_seconds=WAIT))

        async def leaver() -> None:
            with leaving:
                await claim("leaver")

        try:
            with anyio.fail_after(20):  # a lost hint would leave "other" asleep for its whole wait
                async with anyio.create_task_group() as tg:
                    tg.start_soon(leaver)
                    await anyio.sleep(0.1)
                    tg.start_soon(claim, "other")
                    await anyio.sleep(0.2)  # it looked: nothing ready
                    await boss.tasks.create("boss", title="second", capability="build")
                    await anyio.sleep(0.2)  # the hint reached the longest-waiting claimer: "leaver"
                    leaving.cancel()
        finally:
            gate.set()
            kept.close()
        assert got[0].task is not None and got[0].task.title == "second"


async def test_a_wait_entering_while_its_channel_is_being_unsubscribed_is_not_told_too_early(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first wait subscribes and leaves before the reply is read, so the channel's UNSUBSCRIBE follows;
    two more enter then, their SUBSCRIBE held back. The reply to the first SUBSCRIBE is not theirs: each
    is confirmed by the next one (neither waits out CONFIRM_SECONDS unconfirmed), and the wait looks only
    then, and so sees a change made in between."""
    subscribes, replies = [0], [0]
    for name in ("subscribe", "ssubscribe"):
        real_subscribe = getattr(PubSub, name)

        async def second_held(pubsub: PubSub, *channels: Any, real: Any = real_subscribe) -> Any:
            subscribes[0] += 1
            if subscribes[0] == 2:
                await anyio.sleep(1.0)
            return await real(pubsub, *channels)

        monkeypatch.setattr(PubSub, name, second_held)
    real_get = PubSub.get_message

    async def first_reply_late(pubsub: PubSub, *args: Any, **kwargs: Any) -> Any:
        message = await real_get(pubsub, *args, **kwargs)
        if message and message["type"] in ("subscribe", "ssubscribe") and not replies[0]:
            replies[0] += 1
            await anyio.sleep(0.3)
        return message

    monkeypatch.setattr(PubSub, "get_message", first_reply_late)
    settings = fresh_settings(redis_url, max_wait_seconds=WAIT)
    async with AgentBus.open(settings) as bus, AgentBus.open(settings) as boss:
        got: list[Any] = []
        confirmed: list[bool] = []

        async def entered() -> None:  # only notes whether Redis confirmed it
            async with bus.wakeups.expect(["state:k"]) as waiter:
                confirmed.append(not waiter.unconfirmed)

        async def waits() -> None:
            got.append(await bus.state.get("k", after_version=0, wait_seconds=WAIT))

        with anyio.fail_after(20):  # a missed change would leave it asleep for its whole wait
            async with anyio.create_task_group() as tg:
                with anyio.move_on_after(0.05):  # the first wait: gone before its reply is read
                    await bus.state.get("k", after_version=0, wait_seconds=WAIT)
                await anyio.sleep(0.05)  # its UNSUBSCRIBE went
                tg.start_soon(entered)
                tg.start_soon(waits)
                await anyio.sleep(0.4)  # the first reply was read; the second SUBSCRIBE not sent yet
                await boss.state.set("boss", "k", value=1)
        assert got[0].entries[0].version == 1
        assert confirmed == [True]


async def test_claimers_coming_and_going_on_shared_capabilities_take_every_task(redis_url: str) -> None:
    """Claimers that each wait for one task, on capabilities shared with others, started at random
    moments while tasks are created one by one: every task is claimed once, long before any wait ends."""
    claimers, caps = 24, ["build", "test", "docs"]
    rng = random.Random(7)
    claimed: list[str] = []
    async with AgentBus.open(fresh_settings(redis_url, max_wait_seconds=WAIT)) as bus:

        async def claimer(i: int) -> None:
            await anyio.sleep(rng.random() * 0.05)
            claim = await bus.tasks.claim(f"c{i}", capabilities=[caps[i % 3]], wait_seconds=WAIT)
            assert claim.task is not None
            claimed.append(claim.task.id)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(claimers):
                    tg.start_soon(claimer, i)
                for i in range(claimers):
                    await anyio.sleep(rng.random() * 0.004)
                    await bus.tasks.create("boss", title=f"t{i}", capability=caps[i % 3])
        assert len(set(claimed)) == claimers
        await until_subscribed(bus, set())


async def test_a_wait_on_a_key_too_long_to_name_a_channel_is_woken_through_its_hashed_channel(
    redis_url: str,
) -> None:
    key = "dir/" + "é" * WAKE_TOPIC_MAX  # over the bound in bytes, not in characters
    async with AgentBus.open(fresh_settings(redis_url, max_wait_seconds=WAIT)) as bus:
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(bus.state.get, key, after_version=0, wait_seconds=WAIT))
            hashed = bus.store.keys.wake(f"state:{key}")
            assert len(hashed) < len(bus.store.keys.prefix) + 50
            await until_subscribed(bus, {hashed})
            with anyio.fail_after(10):
                await bus.state.set("boss", key, value=1)
        await until_subscribed(bus, set())


async def test_every_resource_a_change_touches_follows_a_channel_that_change_published_on(
    redis_url: str,
) -> None:
    """Record what each channel carries while the scripts run (a pattern subscription, single server
    only), then check push's channels (`topics_for`) cover every URI `changed_by` maps a hint to."""
    if not redis_url.startswith("redis://"):
        pytest.skip("a pattern subscription sees every channel only on one server")
    settings = fresh_settings(redis_url)
    carried: dict[str, set[str]] = defaultdict(set)  # hint → channels that carried it
    spy = connect(redis_url)
    async with AgentBus.open(settings) as bus, spy.pubsub() as pubsub:
        await pubsub.psubscribe(bus.store.keys.wake("*"))
        wf = await bus.workflows.create(
            "boss", title="release", tasks=[{"key": "a", "title": "a", "capability": "build"}]
        )
        claim = await bus.tasks.claim("w", capabilities=["build"])
        assert claim.task is not None and claim.lease is not None
        await bus.tasks.complete("w", claim.task.id, claim.lease.lease_token, result={})
        await bus.inbox.send("boss", "w", "hello")
        await bus.state.set("boss", "cfg/a b", value=1)
        await bus.locks.acquire("w", "src/x.py")
        await bus.events.publish("boss", "deploy.started", data={})
        with anyio.move_on_after(1):
            async for message in pubsub.listen():
                if message["type"] == "pmessage":
                    carried[message["data"]].add(message["channel"])
    await spy.aclose()
    assert {f"workflow:{wf.workflow_id}", "inbox:w", "state:cfg/a b", "event:lock.acquired"} <= carried.keys()
    for hint, channels in carried.items():
        for uri in changed_by(hint):
            followed = {bus.store.keys.wake(topic) for topic in topics_for(uri)}
            assert followed & channels, (hint, uri)


async def test_a_wait_whose_subscription_connection_is_killed_still_sees_the_change(redis_url: str) -> None:
    """The change comes while the subscription is gone: back, it subscribes again and every waiter looks."""
    if redis_url.startswith("memory://"):
        pytest.skip("the embedded store has no connections to kill")
    done = anyio.Event()
    async with (
        AgentBus.open(fresh_settings(redis_url, max_wait_seconds=WAIT)) as bus,
        anyio.create_task_group() as tg,
    ):

        async def wait_for_key() -> None:
            got = await bus.state.get("cfg", after_version=0, wait_seconds=WAIT)
            assert got.entries[0].version == 1
            done.set()

        tg.start_soon(wait_for_key)
        await until_subscribed(bus, {bus.store.keys.wake("state:cfg")})
        kill = ["CLIENT", "KILL", "TYPE", "pubsub"]
        if isinstance(bus.redis, RedisCluster):
            for node in bus.redis.get_nodes():
                await bus.redis.execute_command(*kill, target_nodes=node)
        else:
            await bus.redis.execute_command(*kill)  # type: ignore[no-untyped-call]
        await bus.state.set("boss", "cfg", value=1)
        with anyio.fail_after(10):
            await done.wait()


@pytest.mark.parametrize(
    ("held", "wanted"),
    [("src/", "src/auth/login.py"), ("src/auth/login.py", "src/"), ("/etc/x", "/etc/x"), ("src", "src/a.py")],
)
async def test_a_lock_wait_listens_on_its_path_and_the_dirs_above_and_a_release_there_or_below_wakes_it(
    redis_url: str, held: str, wanted: str
) -> None:
    async with AgentBus.open(fresh_settings(redis_url, max_wait_seconds=WAIT)) as bus:
        holder = await bus.locks.acquire("holder", held, ttl_seconds=WAIT)
        assert holder.lock_token is not None
        done = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def wait_for_lock() -> None:
                got = await bus.locks.acquire("waiter", wanted, wait_seconds=WAIT)
                assert got.acquired
                done.set()

            tg.start_soon(wait_for_lock)
            keys = bus.store.keys
            news = {keys.wake("message:waiter"), keys.wake("lost:waiter")}
            await until_subscribed(bus, news | {keys.wake(topic) for topic in lock_topics(wanted)})
            with anyio.fail_after(10):
                await bus.locks.release("holder", held, holder.lock_token)
                await done.wait()
