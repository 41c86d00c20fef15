"""Soak: events and messages at a steady rate for a while (the plan's soak_rate of each per second, for
soak_seconds), with Redis memory sampled as it goes. Once the namespace's bounds are reached (the event
log's count and bytes, the message records, the inboxes of ids nobody uses), memory must stay flat."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from harness import Figure, Row
from plan import Run
from processes import AGENT
from scale import server_memory

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.errors import InvalidArgument

SECTION = "soak: memory"
FLAT = 1.05  # memory at the end: at most this x memory once the bounds are reached
SAMPLES = 6  # memory samples per soak, evenly spaced
FILLED = 1 / 2  # of the soak, after which every bound is reached (each fills in a sixth, or 3 s)
READER = "soak-reader"  # reads its inbox every second, as a worker would
GHOST_EVERY = 10  # every 10th message goes to an id nobody uses
PAD = "p" * 1_000  # an event of about 1 KB, so the log's byte bound is reached before its count
BODY = "b" * 200


async def soak_section(run: Run) -> list[Row]:
    plan = run.plan
    bound = max(100, plan.soak_rate * plan.soak_seconds // 6)  # reached in a sixth of the soak
    settings = run.namespace(
        "soak",
        event_retention=bound,
        event_log_max_bytes=262_144,  # about 250 events of PAD: 2.5 s
        messages_max=bound,
        inbox_max=100,
        idle_inboxes_max=10,
    )
    outcomes: Counter[str] = Counter()
    samples: list[tuple[int, int]] = []  # (seconds into the soak, memory added)
    async with AgentBus.open(settings) as bus:  # with its reaper, as in a server process
        await bus.presence.heartbeat(READER, ttl_seconds=3_600)
        base = await server_memory(run.redis)
        started = time.monotonic()
        for second in range(plan.soak_seconds):
            for n in range(plan.soak_rate):
                await bus.events.publish(AGENT, "soak.tick", {"n": n, "pad": PAD})
                to = f"ghost-{second}-{n}" if n % GHOST_EVERY == 0 else READER
                try:
                    await bus.inbox.send(AGENT, to, BODY)
                    outcomes["sent"] += 1
                except InvalidArgument:
                    outcomes["refused: idle inboxes"] += 1
            await bus.inbox.read(READER, limit=100)
            if (second + 1) % max(1, plan.soak_seconds // SAMPLES) == 0:
                samples.append((second + 1, await server_memory(run.redis) - base))
            await asyncio.sleep(max(0.0, started + second + 1 - time.monotonic()))
    figures(run, samples, outcomes, plan.soak_rate)
    return []


def figures(run: Run, samples: list[tuple[int, int]], outcomes: Counter[str], rate: int) -> None:
    how = f"{rate} events and {rate} messages a second; INFO used_memory less client memory"
    run.figures += [
        Figure(SECTION, f"memory at {at} s", added / 1e6, "MB", how if i == 0 else "")
        for i, (at, added) in enumerate(samples)
    ]
    filled = next((s for s in samples if s[0] >= FILLED * samples[-1][0]), samples[-1])
    (at, plateau), (end_at, end) = filled, samples[-1]
    per_minute = (end - plateau) / max(end_at - at, 1) * 60
    run.figures += [
        Figure(SECTION, "memory growth once bounded", per_minute / 1e6, "MB/min", f"from {at} s on"),
        Figure(
            SECTION,
            "memory end / once bounded",
            end / plateau if plateau else 0.0,
            "x",
            f"{', '.join(f'{n:,} {what}' for what, n in outcomes.items())}",
            goal=f"<={FLAT}x (flat)",
            goal_met=end <= FLAT * plateau,
        ),
    ]
