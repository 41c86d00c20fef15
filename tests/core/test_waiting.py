"""The wait cap's notice (SPEC "Waits end on what concerns the agent"): a wait_seconds above the server's
cap waits the cap, and says so only when the call really waited that long — never when what it waited
for was there at once or came sooner. Each of the four waits, on both backends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest
from helpers import WAIT_BOUND

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import Result
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio

CAP = 0.3  # seconds: the server's cap in these tests
ASKED = 600  # far above it

Waiter = Callable[[AgentBus, float], Awaitable[Result]]


async def claim(bus: AgentBus, seconds: float) -> Result:
    return await bus.tasks.claim("bob", wait_seconds=seconds)


async def lock(bus: AgentBus, seconds: float) -> Result:
    return await bus.locks.acquire("bob", "src/app.py", wait_seconds=seconds)


async def read_inbox(bus: AgentBus, seconds: float) -> Result:
    return await bus.inbox.read("bob", wait_seconds=seconds)


async def read_events(bus: AgentBus, seconds: float) -> Result:
    return await bus.events.read(topics=["deploy.*"], after="0", wait_seconds=seconds)


WAITS = [claim, lock, read_inbox, read_events]


async def make_it_come(bus: AgentBus, wait: Waiter) -> None:
    """What `wait` waits for: a ready task, a free lock (alice held it), a message, an event."""
    if wait is claim:
        await bus.tasks.create("alice", title="ready now")
    elif wait is lock:
        await bus.locks.release(
            "alice", "src/app.py", (await bus.locks.acquire("alice", "src/app.py")).lock_token or ""
        )
    elif wait is read_inbox:
        await bus.inbox.send("alice", "bob", "here already")
    else:
        await bus.events.publish("alice", "deploy.done", {"ok": True})


async def keep_it_away(bus: AgentBus, wait: Waiter) -> None:
    """Nothing comes for `wait`: for a lock, alice holds it (the other things are not there anyway)."""
    if wait is lock:
        await bus.locks.acquire("alice", "src/app.py", ttl_seconds=60)


def found(result: Result) -> bool:
    data = result.model_dump()
    return bool(data.get("task") or data.get("acquired") or data.get("messages") or data.get("events"))


def cap_notices(result: Result) -> list[str]:
    return [n for n in result.notices if "server's cap" in n]


@pytest.mark.parametrize("wait", WAITS, ids=lambda w: w.__name__)
async def test_a_wait_answered_at_once_says_nothing_of_the_cap(settings: Settings, wait: Waiter) -> None:
    async with AgentBus.open(settings.model_copy(update={"max_wait_seconds": CAP})) as bus:
        await make_it_come(bus, wait)
        with anyio.fail_after(WAIT_BOUND):
            got = await wait(bus, ASKED)
    assert found(got), got
    assert cap_notices(got) == [], got.notices


@pytest.mark.parametrize("wait", WAITS, ids=lambda w: w.__name__)
async def test_a_wait_answered_before_the_cap_says_nothing_of_it(settings: Settings, wait: Waiter) -> None:
    async with AgentBus.open(settings.model_copy(update={"max_wait_seconds": 4})) as bus:
        await keep_it_away(bus, wait)
        results: list[Result] = []

        async def waiter() -> None:
            results.append(await wait(bus, ASKED))

        with anyio.fail_after(WAIT_BOUND):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.2)  # the waiter waits by now, or else it finds it at its first look
                await make_it_come(bus, wait)
    [got] = results
    assert found(got), got
    assert cap_notices(got) == [], got.notices


@pytest.mark.parametrize("wait", WAITS, ids=lambda w: w.__name__)
async def test_a_wait_that_runs_to_the_cap_says_it_waited_the_cap(settings: Settings, wait: Waiter) -> None:
    async with AgentBus.open(settings.model_copy(update={"max_wait_seconds": CAP})) as bus:
        await keep_it_away(bus, wait)
        with anyio.fail_after(WAIT_BOUND):
            got = await wait(bus, ASKED)
    assert not found(got), got
    [notice] = cap_notices(got)
    assert f"wait_seconds={ASKED}" in notice and f"{CAP:g} s" in notice, notice


@pytest.mark.parametrize("wait", WAITS, ids=lambda w: w.__name__)
async def test_a_wait_up_to_the_cap_says_nothing_of_it(settings: Settings, wait: Waiter) -> None:
    async with AgentBus.open(settings.model_copy(update={"max_wait_seconds": CAP})) as bus:
        await keep_it_away(bus, wait)
        with anyio.fail_after(WAIT_BOUND):
            got = await wait(bus, CAP)
    assert not found(got), got
    assert cap_notices(got) == [], got.notices
