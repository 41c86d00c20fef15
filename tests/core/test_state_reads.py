"""Reading shared state: prefix listings paged by cursor within one reply, and waits for a newer version
that a write (from another bus on the same Redis), a deletion or an expiry ends at once."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from helpers import ALSO_ON_CLUSTER, fresh_settings, ms_of

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.errors import InvalidArgument
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio

WAIT = 5.0  # the wait each waiting test asks for (the settings' cap); each is woken far sooner
WOKEN = 3.0  # bound on a wait that a change must end: below WAIT, so only a wake-up can meet it


@ALSO_ON_CLUSTER
async def test_a_prefix_lists_every_key_under_it_sorted(bus: AgentBus) -> None:
    for key in ("results/b", "results/a", "results-old/x", "plan", "results/c/d"):
        await bus.state.set("a", key, value=key)
    listed = await bus.state.get(prefix="results/")
    assert [e.key for e in listed.entries] == ["results/a", "results/b", "results/c/d"]
    assert [e.value for e in listed.entries] == ["results/a", "results/b", "results/c/d"]
    assert listed.cursor is None
    everything = await bus.state.get(prefix="")
    assert [e.key for e in everything.entries] == [
        "plan",
        "results-old/x",
        "results/a",
        "results/b",
        "results/c/d",
    ]


@ALSO_ON_CLUSTER
async def test_pages_of_a_listing_cover_each_key_once_and_the_last_has_no_cursor(bus: AgentBus) -> None:
    keys = [f"k/{n:02}" for n in range(23)]
    for key in keys:
        await bus.state.set("a", key, value=1)
    await bus.state.set("a", "k/05", delete=True)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = await bus.state.get(prefix="k/", limit=5, cursor=cursor)
        assert len(page.entries) <= 5
        seen += [e.key for e in page.entries]
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == [k for k in keys if k != "k/05"]


@ALSO_ON_CLUSTER
async def test_a_listing_stops_before_its_reply_is_too_large_and_goes_on_by_cursor(redis_url: str) -> None:
    async with AgentBus.open(fresh_settings(redis_url)) as bus:
        for n in range(6):
            await bus.state.set("a", f"big/{n}", value="v" * 60_000)
        first = await bus.state.get(prefix="big/", limit=50)
        assert 1 <= len(first.entries) < 6 and first.cursor is not None
        assert any("cursor" in n for n in first.notices)
        rest = await bus.state.get(prefix="big/", limit=50, cursor=first.cursor)
        assert [e.key for e in first.entries + rest.entries] == [f"big/{n}" for n in range(6)]


async def test_bad_reads_are_refused_with_what_to_pass(bus: AgentBus) -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({}, "exactly one of key or prefix"),
        ({"key": "a", "prefix": "b"}, "exactly one of key or prefix"),
        ({"prefix": "a/", "after_version": 1, "wait_seconds": 1}, "pass key, not prefix"),
        ({"key": "a", "wait_seconds": 1}, "needs after_version"),
        ({"key": "a", "cursor": "a"}, "cursor goes with prefix"),
        ({"prefix": "a/", "cursor": "b/x"}, "not a key under prefix"),
        ({"prefix": "a/", "limit": 201}, "limit"),
    ]
    for kwargs, says in cases:
        with pytest.raises(InvalidArgument, match=says):
            await bus.state.get(**kwargs)  # type: ignore[arg-type]


@ALSO_ON_CLUSTER
async def test_a_wait_for_a_newer_version_ends_when_another_bus_writes_it(settings: Settings) -> None:
    async with AgentBus.open(settings) as waiter, AgentBus.open(settings) as writer:
        await writer.state.set("planner", "plan", value="draft")
        with anyio.fail_after(WOKEN):
            async with anyio.create_task_group() as tg:

                async def write_soon() -> None:
                    await anyio.sleep(0.2)
                    await writer.state.set("planner", "plan", value="final")

                tg.start_soon(write_soon)
                got = await waiter.state.get("plan", after_version=1, wait_seconds=WAIT)
    [entry] = got.entries
    assert (entry.value, entry.version) == ("final", 2)


async def test_a_version_already_above_returns_at_once_and_a_quiet_key_waits_it_out(redis_url: str) -> None:
    async with AgentBus.open(fresh_settings(redis_url, max_wait_seconds=0.3)) as bus:
        await bus.state.set("a", "k", value=1)
        with anyio.fail_after(WOKEN):
            assert (await bus.state.get("k", after_version=0, wait_seconds=WAIT)).entries[0].version == 1
            short = await bus.state.get("k", after_version=1, wait_seconds=0.2)
            capped = await bus.state.get("k", after_version=1, wait_seconds=1)
    assert [e.version for e in short.entries] == [1]
    assert short.notices == []
    assert [e.version for e in capped.entries] == [1]
    assert any("cap" in n for n in capped.notices)


async def test_a_wait_on_a_key_not_yet_set_ends_when_it_is_created(bus: AgentBus) -> None:
    with anyio.fail_after(WOKEN):
        async with anyio.create_task_group() as tg:

            async def create_soon() -> None:
                await anyio.sleep(0.2)
                await bus.state.set("a", "result/1", value={"ok": True})

            tg.start_soon(create_soon)
            got = await bus.state.get("result/1", after_version=0, wait_seconds=WAIT)
    assert got.entries[0].value == {"ok": True}


async def test_a_wait_ends_when_the_key_is_deleted_or_expires(bus: AgentBus) -> None:
    await bus.state.set("a", "gone", value=1)
    with anyio.fail_after(WOKEN):
        async with anyio.create_task_group() as tg:

            async def delete_soon() -> None:
                await anyio.sleep(0.2)
                await bus.state.set("a", "gone", delete=True)

            tg.start_soon(delete_soon)
            assert (await bus.state.get("gone", after_version=1, wait_seconds=WAIT)).entries == []
    written = await bus.state.set("a", "brief", value=1, ttl_seconds=0.3)
    with anyio.fail_after(WOKEN):  # nobody writes: the wait wakes itself at the expiry
        assert (await bus.state.get("brief", after_version=1, wait_seconds=WAIT)).entries == []
    assert written.expires_at is not None and ms_of(written.expires_at) > 0


async def test_a_wait_reads_redis_once_and_then_only_on_a_wake_up(own_redis: Callable[..., str]) -> None:
    """No polling: a second-long wait on a quiet key reads the key once (and once more at its end)."""
    url = own_redis()
    async with AgentBus.open(fresh_settings(url), reaper=False) as bus:
        await bus.state.set("a", "quiet", value=1)

        async def reads() -> int:
            stats = await bus.redis.info("commandstats")
            return int(stats.get("cmdstat_hmget", {}).get("calls", 0))

        before = await reads()
        with anyio.fail_after(WOKEN):
            await bus.state.get("quiet", after_version=1, wait_seconds=1)
        assert await reads() - before <= 2
