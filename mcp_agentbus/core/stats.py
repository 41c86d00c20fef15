"""Throughput and queue depth over the last hour, as the dashboard's charts show them (read only).

The scripts that end an attempt (complete_task, fail_task, the reaper's lease expiry) count it in the
namespace's ``throughput`` hash, a field per kind and minute of Redis time; the reaper samples the ready
queues into the ``depth`` hash once a minute and trims both to the hour (``lua/include/stats.lua``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from mcp_agentbus.redis.store import Store

MINUTES = 60  # the charts' span, and what the reaper keeps
MINUTE_MS = 60_000
CAPS_SHOWN = 20  # capabilities in the depth charts: the deepest queues, now or within the hour
KINDS = ("done", "failed", "dead")


@dataclass(frozen=True)
class Stats:
    now_ms: int
    minutes: list[int]  # the start (ms) of each minute, oldest first; the last is the current one
    done: list[int]  # tasks completed in each minute
    failed: list[int]  # attempts that failed (fail_task, or a lease that expired)
    dead: list[int]  # tasks that died (their last attempt failed)
    ready_now: dict[str, int]  # ready tasks per capability now (those of `ready`)
    ready: dict[str, list[int]]  # per capability, its ready tasks at each minute's sample (0: none)
    capabilities: int  # capabilities with ready tasks now or in a sample; `ready` shows CAPS_SHOWN

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


async def last_hour(store: Store, caps: int = CAPS_SHOWN) -> Stats:
    """Each minute of the last hour (the current one so far last), zeros where nothing was counted; the
    depth of the `caps` deepest queues now and at each minute's sample."""
    now = await store.now_ms()
    first = now // MINUTE_MS - MINUTES + 1
    keys = store.keys
    with store.backend():
        async with store.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.throughput)
            pipe.hgetall(keys.depth)
            pipe.hgetall(keys.counters)
            counts, samples, counters = await pipe.execute()
    series = {kind: [0] * MINUTES for kind in KINDS}
    for field, count in counts.items():
        kind, _, minute = field.partition(":")
        at = int(minute) - first
        if kind in series and 0 <= at < MINUTES:  # older ones wait for the reaper's trim
            series[kind][at] = int(count)
    depth: dict[str, list[int]] = {}
    for minute, sample in samples.items():
        at = int(minute) - first
        for pair in sample.split(",") if sample and 0 <= at < MINUTES else ():
            cap, _, count = pair.partition("=")
            depth.setdefault(cap, [0] * MINUTES)[at] = int(count)
    now_ready = {
        name.removeprefix("ready:"): int(n)
        for name, n in counters.items()
        if name.startswith("ready:") and int(n)
    }
    peak = {cap: max([*depth.get(cap, [0]), now_ready.get(cap, 0)]) for cap in depth.keys() | now_ready}
    shown = sorted(peak, key=lambda cap: (-peak[cap], cap))[:caps]
    return Stats(
        now_ms=now,
        minutes=[(first + i) * MINUTE_MS for i in range(MINUTES)],
        done=series["done"],
        failed=series["failed"],
        dead=series["dead"],
        ready_now={cap: now_ready.get(cap, 0) for cap in shown},
        ready={cap: depth.get(cap, [0] * MINUTES) for cap in shown},
        capabilities=len(peak),
    )
