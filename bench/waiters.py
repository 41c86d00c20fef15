"""Waiting without polling, at scale.

Many claimers waiting at once (`waiters_section`): `waiters` agents wait in `claim_task` (core API, one
process, one bus) while tasks are created one at a time. Each task should wake one claimer, not all of
them: the figures are the claim scripts Redis runs per task created (from ``INFO commandstats``: every
script call is an EVALSHA, and the other clients are idle), the time from a create to its claim, and the
latency of another agent's heartbeat meanwhile.

Idle servers (`idle_section`): IDLE_SERVERS stdio server processes, one MCP client each (one agent
runner per agent), idle while one agent claims and completes flat out: their CPU together (issue 18:
≤ 5 % of one core; wake-up channels are subscribed only while something waits, so an idle server hears
nothing), then how soon a claim waiting in one of them is woken by a task created here.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import anyio
from harness import Figure, Row
from mcp import Client, StdioServerParameters
from plan import Run
from processes import START_SECONDS, agentbus_env, cpu_clock

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


IDLE_SERVERS = 32
IDLE_CPU_GOAL = 0.05  # of one core, the idle servers together
WAKE_GOAL_MS = 5.0  # p50, a waiting claim in another process, from the create to the claim's reply


async def idle_section(run: Run) -> list[Row]:
    seconds, wakes = (3.0, 10) if run.plan.waiters < 1000 else (10.0, 30)
    settings = run.namespace("idle", max_wait_seconds=WAIT_SECONDS)
    env = {"PATH": os.environ.get("PATH", ""), **agentbus_env(settings)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_agentbus", "serve"], env=env)
    clients: list[Client] = []
    all_up, stop = anyio.Event(), anyio.Event()

    async def hold() -> None:  # each client in a task of its own, as the SDK requires
        async with Client(params) as client:
            clients.append(client)
            if len(clients) == IDLE_SERVERS:
                all_up.set()
            await stop.wait()

    async with anyio.create_task_group() as servers, AgentBus.open(settings, reaper=False) as bus:
        for _ in range(IDLE_SERVERS):
            servers.start_soon(hold)
        with anyio.fail_after(START_SECONDS * 3):
            await all_up.wait()
        await anyio.sleep(1)  # the servers settle
        cpu = cpu_clock({"bench": os.getpid(), "redis": run.redis_pid}, children="servers")
        before, cycles, started = cpu(), [], time.perf_counter()
        while time.perf_counter() - started < seconds:
            cycle = time.perf_counter()
            await bus.tasks.create("bench", title="work", capability="busy")
            claim = await bus.tasks.claim("busy-agent", capabilities=["busy"])
            assert claim.task is not None and claim.lease is not None
            await bus.tasks.complete("busy-agent", claim.task.id, claim.lease.lease_token, result={})
            cycles.append((time.perf_counter() - cycle) * 1000)
        elapsed = time.perf_counter() - started
        idle_cores = (cpu()["servers"] - before["servers"]) / elapsed
        delays = [await _woken_in_another_process(bus, clients[0]) for _ in range(wakes)]
        stop.set()
    how = f"{IDLE_SERVERS} stdio servers with a client each, idle; one agent (core API) {len(cycles)} cycles"
    wake_how = f"claim_task waiting in a stdio server; task created by this process; {wakes} rounds"
    wake_p50 = statistics.median(delays)
    run.figures += [
        Figure(
            "scale: idle servers",
            f"{IDLE_SERVERS} idle servers' CPU together",
            idle_cores * 100,
            "% of a core",
            how,
            f"≤ {IDLE_CPU_GOAL * 100:g} %",
            idle_cores <= IDLE_CPU_GOAL,
        ),
        Figure(
            "scale: idle servers",
            "busy agent's create+claim+complete, p50",
            statistics.median(cycles),
            "ms",
            how,
        ),
        Figure(
            "scale: idle servers",
            "waiting claim woken across processes, p50",
            wake_p50,
            "ms",
            wake_how,
            f"≤ {WAKE_GOAL_MS:g} ms",
            wake_p50 <= WAKE_GOAL_MS,
        ),
    ]
    return []


async def _woken_in_another_process(bus: AgentBus, client: Client) -> float:
    """Ms from starting a create to the reply of a claim that waited for it in a server process."""
    created = 0.0
    replied = anyio.Event()

    async def wait() -> None:
        await client.call_tool("claim_task", {"capabilities": ["wake"], "wait_seconds": WAIT_SECONDS})
        replied.set()

    with anyio.fail_after(BOUND_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.2)  # the claim has looked and waits
            created = time.perf_counter()
            await bus.tasks.create("bench", title="wake", capability="wake")
            await replied.wait()
    return (time.perf_counter() - created) * 1000
