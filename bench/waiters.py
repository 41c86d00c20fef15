"""Many claimers waiting at once: what one new task costs Redis and everyone else.

`waiters` agents wait in `claim_task` (core API, one process, one bus) while tasks are created one at
a time. Each task should wake one claimer, not all of them: the figures are the claim scripts Redis
runs per task created (from ``INFO commandstats``: every script call is an EVALSHA, and the other
clients are idle), the time from a create to its claim, and the latency of another agent's heartbeat
meanwhile.
"""

from __future__ import annotations

import statistics
import time

import anyio
from harness import Figure, Row
from plan import Run

from mcp_agentbus.core.bus import AgentBus

SECTION = "scale: waiting claimers"
WAIT_SECONDS = 60  # longer than the section takes: only a wake-up ends a claimer's wait
BOUND_SECONDS = 120


async def evalsha_calls(run: Run) -> int:
    stats = await run.redis.info("commandstats")
    calls: int = stats.get("cmdstat_evalsha", {}).get("calls", 0)
    return calls


async def waiters_section(run: Run) -> list[Row]:
    waiters, tasks = run.plan.waiters, 20
    settings = run.namespace("waiters", max_wait_seconds=WAIT_SECONDS)
    claimed: list[float] = []
    async with AgentBus.open(settings, reaper=False) as bus:
        taken = anyio.Event()

        async def claimer(i: int) -> None:
            got = await bus.tasks.claim(f"waiter-{i}", capabilities=["bench"], wait_seconds=WAIT_SECONDS)
            if got.task is not None:
                claimed.append(time.perf_counter())
                taken.set()

        with anyio.fail_after(BOUND_SECONDS):
            async with anyio.create_task_group() as tg:
                for i in range(waiters):
                    tg.start_soon(claimer, i)
                await anyio.sleep(1 + waiters / 500)  # every claimer has looked once and waits
                before = await evalsha_calls(run)
                delays, beats = [], []
                for n in range(tasks):
                    taken = anyio.Event()
                    started = time.perf_counter()
                    await bus.tasks.create("bench", title=f"for a waiter {n}", capability="bench")
                    beat = time.perf_counter()
                    await bus.presence.heartbeat("bystander")
                    beats.append((time.perf_counter() - beat) * 1000)
                    await taken.wait()
                    delays.append((claimed[-1] - started) * 1000)
                scripts = await evalsha_calls(run) - before
                tg.cancel_scope.cancel()
    # per task: its create, one heartbeat, and the claim scripts it set off
    per_task = scripts / tasks - 2
    how = f"{waiters} claimers waiting on one process; {tasks} tasks created one at a time"
    run.figures += [
        Figure(SECTION, "claim scripts run per task created", per_task, "scripts", how, "≤ 2", per_task <= 2),
        Figure(SECTION, "create to claimed, p50", statistics.median(delays), "ms", how),
        Figure(SECTION, "another agent's heartbeat meanwhile, max", max(beats), "ms", how),
    ]
    return []
