"""Wake-ups: a ready task wakes one waiting claimer, not every one, and no hint is spent on nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from helpers import fresh_settings

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.tasks import Tasks
from mcp_agentbus.redis.replies import Claimed, NothingReady
from mcp_agentbus.redis.scripts import Script
from mcp_agentbus.redis.store import Store

pytestmark = pytest.mark.anyio

BOUND = 10  # seconds; far below the waits below, so only a wake-up can end them in time
WAIT = 25


async def until(check: Callable[[], bool]) -> None:
    """Poll (bounded by the caller's fail_after) until `check()` holds."""
    while True:
        if check():
            return
        await anyio.sleep(0.01)


def count_scripts(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    runs: Counter[str] = Counter()
    real = Store.run

    async def run(store: Store, script: Script[Any], *args: Any) -> Any:
        try:
            return await real(store, script, *args)
        finally:
            runs[script.name] += 1  # counted once it has run: a claim that ran and found nothing is waiting

    monkeypatch.setattr(Store, "run", run)
    return runs


async def test_a_ready_task_wakes_one_waiting_claimer_and_every_task_finds_one(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = count_scripts(monkeypatch)
    waiters = 20
    got: dict[str, str] = {}
    async with AgentBus.open(fresh_settings(redis_url, max_wait_seconds=WAIT)) as bus:

        async def claimer(i: int) -> None:
            claim = await bus.tasks.claim(f"w{i}", capabilities=["build"], wait_seconds=WAIT)
            assert claim.task is not None
            got[f"w{i}"] = claim.task.id

        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                for i in range(waiters):
                    tg.start_soon(claimer, i)
                await until(lambda: runs["claim_task"] == waiters)  # each looked once and found nothing
                await bus.tasks.create("boss", title="first", capability="build")
                await until(lambda: bool(got))
                assert runs["claim_task"] == waiters + 1  # one claimer looked again, not twenty
                for n in range(waiters - 1):
                    await bus.tasks.create("boss", title=f"more {n}", capability="build")
    assert len(got) == waiters and len(set(got.values())) == waiters
    assert runs["claim_task"] == 2 * waiters


async def test_a_claimer_woken_then_gone_hands_its_task_to_another(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scopes: dict[str, anyio.CancelScope] = {}
    looks: Counter[str] = Counter()
    real = Tasks._claim_once

    async def claim_once(self: Tasks, agent: str, *args: Any) -> Claimed | NothingReady:
        looks[agent] += 1
        if agent == "leaver" and looks[agent] == 2:  # woken, and cancelled before it looks again
            scopes[agent].cancel()
            await anyio.lowlevel.checkpoint()
        return await real(self, agent, *args)

    monkeypatch.setattr(Tasks, "_claim_once", claim_once)
    taken: list[str] = []
    async with AgentBus.open(fresh_settings(redis_url, max_wait_seconds=WAIT)) as bus:

        async def claimer(agent: str) -> None:
            with anyio.CancelScope() as scopes[agent]:
                claim = await bus.tasks.claim(agent, capabilities=["build"], wait_seconds=WAIT)
                assert claim.task is not None
                taken.append(agent)

        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                tg.start_soon(claimer, "leaver")
                await until(lambda: looks["leaver"] == 1)
                tg.start_soon(claimer, "stayer")  # waits longer than WAIT unless handed the hint
                await until(lambda: looks["stayer"] == 1)
                await bus.tasks.create("boss", title="for whoever is there", capability="build")
    assert taken == ["stayer"]
    assert looks["leaver"] == 2  # it was the one woken (the longest waiting), and it left


async def test_a_reader_of_events_waiting_too_does_not_take_the_wake_up_meant_for_a_claimer(
    redis_url: str,
) -> None:
    got: list[str] = []
    async with AgentBus.open(fresh_settings(redis_url, max_wait_seconds=WAIT)) as bus:

        async def claimer() -> None:
            claim = await bus.tasks.claim("w", capabilities=["build"], wait_seconds=WAIT)
            assert claim.task is not None
            got.append(claim.task.title)

        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                # The reader waits first (the longest waiting), for every hint of the namespace.
                tg.start_soon(lambda: bus.events.read(topics=["nothing.*"], wait_seconds=WAIT))
                await anyio.sleep(0.2)
                tg.start_soon(claimer)
                await anyio.sleep(0.2)
                await bus.tasks.create("boss", title="for the claimer", capability="build")
                await until(lambda: bool(got))
                tg.cancel_scope.cancel()
    assert got == ["for the claimer"]


async def test_a_wake_up_that_comes_while_a_claimer_is_looking_is_not_lost(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claimer whose look is slow gets a second wake-up meanwhile; after it takes one task, that
    wake-up goes to the other claimer, whose task would otherwise wait out the whole wait."""
    real = Tasks._claim_once
    looks: Counter[str] = Counter()

    async def claim_once(self: Tasks, agent: str, *args: Any) -> Claimed | NothingReady:
        reply = await real(self, agent, *args)
        looks[agent] += 1
        if agent == "slow" and looks[agent] == 2:
            await anyio.sleep(1)  # the reply of its second look is slow to come
        return reply

    monkeypatch.setattr(Tasks, "_claim_once", claim_once)
    got: dict[str, str] = {}
    async with AgentBus.open(fresh_settings(redis_url, max_wait_seconds=WAIT)) as bus:

        async def claimer(agent: str) -> None:
            claim = await bus.tasks.claim(agent, capabilities=["build"], wait_seconds=WAIT)
            assert claim.task is not None
            got[agent] = claim.task.title

        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                tg.start_soon(claimer, "slow")
                await until(lambda: looks["slow"] == 1)
                await bus.tasks.create("boss", title="first", capability="build")
                await anyio.sleep(0.2)  # "slow" is woken and looking (slowly)
                tg.start_soon(claimer, "other")
                await until(lambda: looks["other"] == 1)
                await bus.tasks.create("boss", title="second", capability="build")
    assert got == {"slow": "first", "other": "second"}
