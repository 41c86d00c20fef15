"""Scale: a long dependency chain whose head dies, in a namespace holding as many tasks as the deepest
queue of the depth section (a million in the full plan). Every task downstream is cancelled, in bounded
batches that the reaper continues; SLOWLOG gives the slowest script while that runs (the goal: none
over 50 ms), and the wall time is how long the whole cascade took."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from harness import Figure, Row
from plan import Run
from processes import AGENT
from scale import BATCH, LOAD_SECONDS, Pipelined, drop, fill
from workloads import GRAPH_BOUNDS, expect_ok

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.redis.connection import Redis
from mcp_agentbus.redis.keys import Keys

SECTION = "scale: cascade"
SLOW_GOAL_MS = 50.0  # the goal: no script over 50 ms
# SLOWLOG while the cascade runs: it also logs the commands a script calls, each paying for its entry, so a
# threshold of 0 would slow the scripts measured; 100 µs logs every script of a batch and few commands.
SLOWLOG_THRESHOLD_US = 100
SLOWLOG_LEN = 10_000  # entries kept: a 100,000-task cascade runs some 1,000 scripts
POLL_SECONDS = 0.05  # how often the end of the cascade is looked for


async def build_chain(raw: Pipelined, length: int) -> None:
    """t-1 (one attempt), then t-2 .. t-`length`, each depending on the one before: create_task
    pipelined BATCH deep on one connection, which keeps the order the dependencies need."""

    def link(n: int) -> bytes:
        after = f"t-{n - 1}" if n > 1 else ""
        return raw.command(
            "create_task", AGENT, "", f"link {n}", "", "any", "normal", "null", after, "", 1, 0, *GRAPH_BOUNDS
        )

    async with asyncio.timeout(LOAD_SECONDS):
        for start in range(1, length + 1, BATCH):
            for reply in await raw.send([link(n) for n in range(start, min(length + 1, start + BATCH))]):
                expect_ok("create_task", reply)


@asynccontextmanager
async def slowlog(redis: Redis) -> AsyncIterator[None]:
    """SLOWLOG records the block's commands over SLOWLOG_THRESHOLD_US, from empty; the server's own
    settings are put back afterwards."""
    saved = cast("dict[str, str]", await redis.config_get("slowlog-*"))
    await redis.config_set("slowlog-log-slower-than", SLOWLOG_THRESHOLD_US)
    await redis.config_set("slowlog-max-len", SLOWLOG_LEN)
    await redis.slowlog_reset()
    try:
        yield
    finally:
        for name, value in saved.items():
            await redis.config_set(name, value)
        await redis.slowlog_reset()


async def cascade_section(run: Run) -> list[Row]:
    length, size = run.plan.chain, max(run.plan.chain, run.plan.depths[-1])
    settings = run.namespace("cascade")
    keys = Keys(settings.namespace)
    try:
        raw = await Pipelined.load(run.redis, settings, "create_task")
        started = time.perf_counter()
        await build_chain(raw, length)
        built = time.perf_counter() - started
        await fill(raw, size - length)  # ready tasks besides the chain (t-1 .. t-length)
        async with AgentBus.open(settings) as bus, slowlog(run.redis):
            calls = await script_calls(run.redis)
            claim = await bus.tasks.claim(AGENT, task_id="t-1")
            if claim.lease is None:
                raise RuntimeError(f"cascade: the head of the chain could not be claimed: {claim.reason}")
            started = time.perf_counter()
            failed = await bus.tasks.fail(AGENT, "t-1", claim.lease.lease_token, error="bench", retry=False)
            async with asyncio.timeout(LOAD_SECONDS):
                while True:
                    if await run.redis.hget(keys.task(f"t-{length}"), "state") == "cancelled":
                        break
                    await asyncio.sleep(POLL_SECONDS)
            took = time.perf_counter() - started
            calls = await script_calls(run.redis) - calls
            logged = await run.redis.slowlog_get(SLOWLOG_LEN)
        slowest = max((entry["duration"] for entry in logged if is_script(entry)), default=0) / 1000
        await check_cancelled(run, keys, length)
    finally:
        await drop(run, settings.namespace)
    how = (
        f"a chain of {length:,} tasks (built in {built:.1f} s by create_task, pipelined) whose head dies, "
        f"in a namespace of {size:,} tasks"
    )
    run.figures += [
        Figure(
            SECTION,
            f"chain of {length:,}: slowest script while it cascades",
            slowest,
            "ms",
            f"SLOWLOG over {SLOWLOG_THRESHOLD_US} µs, of {calls:,} scripts run meanwhile (fail_task, the "
            f"reaper's reap calls); " + how,
            goal=f"<= {SLOW_GOAL_MS:g} ms",
            goal_met=slowest <= SLOW_GOAL_MS,
        ),
        Figure(
            SECTION,
            f"chain of {length:,}: the whole cascade",
            took,
            "s",
            f"from fail_task until the last task is cancelled; fail_task cancelled {len(failed.cancelled)}, "
            f"the reaper (every {settings.reaper_interval_seconds:g} s) the rest",
        ),
    ]
    return []


async def script_calls(redis: Redis) -> int:
    """EVALSHA calls so far (INFO commandstats)."""
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def is_script(entry: dict[str, Any]) -> bool:
    command = entry["command"]
    return (command.decode() if isinstance(command, bytes) else str(command)).startswith("EVALSHA")


async def check_cancelled(run: Run, keys: Keys, length: int) -> None:
    """Every task after the head is cancelled, and no cascade is left queued."""
    states: dict[str, int] = {}
    for start in range(2, length + 1, BATCH):
        async with run.redis.pipeline(transaction=False) as pipe:
            for n in range(start, min(length + 1, start + BATCH)):
                pipe.hget(keys.task(f"t-{n}"), "state")
            for state in await pipe.execute():
                states[state] = states.get(state, 0) + 1
    queued = await run.redis.llen(keys.cascade)
    if states != {"cancelled": length - 1} or queued:
        run.failures.append(
            f"cascade: the {length - 1:,} tasks after the head are {states}, {queued} entries left"
        )
