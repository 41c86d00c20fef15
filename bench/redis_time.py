"""What each operation costs Redis itself (section `redis time per call`): every script step run alone
as a tool call runs it (for an agent: its presence renewed, its notices returned), its time inside Redis
read from ``INFO commandstats`` (EVALSHA microseconds) before and after each call. Redis runs one script
at a time, so the figure bounds how many such calls one Redis serves a second, however many server
processes stand in front of it.
"""

from __future__ import annotations

import statistics

from harness import Figure
from plan import Run
from processes import AGENT
from workloads import RawScripts, create_tasks, raw_workloads

from mcp_agentbus.redis.connection import Redis

SECTION = "redis time per call"
WARMUP = 20  # runs of each operation first, so every script is loaded


async def evalsha_microseconds(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    usec: int = stats.get("cmdstat_evalsha", {}).get("usec", 0)
    return usec


async def redis_time_section(run: Run) -> None:
    calls = run.plan.redis_time_calls
    settings = run.namespace("redis-time")
    await create_tasks(run.redis, settings, calls + WARMUP)
    raw = RawScripts(run.redis, settings, caller=f"{AGENT},0")
    for workload in raw_workloads(raw):
        for _ in range(WARMUP):
            value = None
            for step in workload.steps:
                value = await step(value)
        spent: list[list[int]] = [[] for _ in workload.steps]
        for _ in range(calls):
            value = None
            for step, times in zip(workload.steps, spent, strict=True):
                before = await evalsha_microseconds(run.redis)
                value = await step(value)
                times.append(await evalsha_microseconds(run.redis) - before)
        for name, times in zip(workload.step_names, spent, strict=True):
            median = statistics.median(times)
            first = not any(figure.section == SECTION for figure in run.figures)
            how = f"p50 of {calls} calls alone, from INFO commandstats; " if first else ""
            run.figures.append(
                Figure(
                    SECTION,
                    name if name == workload.name else f"{workload.name} {name}",
                    median,
                    "µs",
                    f"{how}one Redis: at most about {1e6 / max(median, 1):,.0f} a second",
                )
            )
