"""Soaks: events and messages at a steady rate, Redis memory sampled as it goes (section `soak`).

- With lowered bounds (`soak: lowered bounds`, always): the plan's soak_rate of each per second for
  soak_seconds (60 s; 6 s with --quick), each bound set to about a sixth of that volume, so every bound
  (the event log's count and bytes, the inboxes, the inboxes of ids nobody uses) is reached early
  and memory must stay flat after: it proves each bound holds.
- With the default settings (`soak: defaults`, only with `bench.py --soak-minutes N`, `make soak`): 100
  events and 100 messages a second for N minutes, memory every 10 s; growth over each minute after the
  first must stay within FLAT_SHARE of the memory at minute 1. Afterwards (and at minute 1) the
  namespace's keys are counted and sized per key family, which names the bound that is reached late.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from harness import Figure, Row
from plan import Run
from processes import AGENT
from scale import server_memory

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.errors import InvalidArgument
from mcp_agentbus.redis.keys import LAYOUT, Keys
from mcp_agentbus.settings import Settings

SECTION = "soak: lowered bounds"
DEFAULTS_SECTION = "soak: defaults"
FLAT = 1.05  # lowered bounds: memory at the end at most this x memory once the bounds are reached
SAMPLES = 6  # lowered bounds: memory samples per soak, evenly spaced
FILLED = 1 / 2  # of the soak, after which every bound is reached (each fills in a sixth, or 3 s)
READER = "soak-reader"  # reads its inbox every second, as a polling worker would
GHOST_EVERY = 10  # every 10th message goes to an id nobody uses
PAD = "p" * 1_000  # an event of about 1 KB, so the log's byte bound is reached before its count
BODY = "b" * 200
RATE = 100  # defaults: events, and messages, per second
SAMPLE_SECONDS = 10  # defaults: memory sampled this often
FLAT_SHARE = 0.02  # defaults: "flat" is at most this share of the memory at minute 1 added per minute
SENDERS = tuple(f"soak-worker-{k}" for k in range(10))  # defaults: senders, each charged its idle inboxes
FLAT_MINUTES = 2  # defaults: "flat from minute M" needs at least this many flat minutes after M
SHOWN_BYTES = 10_000  # defaults: key families smaller than this at the end are left out of the table
FAMILIES = sorted((name for name in LAYOUT if name.endswith(":")), key=len, reverse=True)


async def soak_section(run: Run) -> list[Row]:
    await lowered_soak(run)
    if run.plan.soak_minutes:
        await defaults_soak(run, run.plan.soak_minutes)
    return []


async def paced(seconds: int, each_second: Callable[[int], Awaitable[None]]) -> None:
    """`each_second(second)` once per wall-clock second for `seconds`; a slow second is caught up after."""
    started = time.monotonic()
    for second in range(seconds):
        await each_second(second)
        await asyncio.sleep(max(0.0, started + second + 1 - time.monotonic()))


async def lowered_soak(run: Run) -> None:
    plan = run.plan
    bound = max(100, plan.soak_rate * plan.soak_seconds // 6)  # reached in a sixth of the soak
    settings = run.namespace(
        "soak",
        event_retention=bound,
        event_log_max_bytes=262_144,  # about 250 events of PAD: 2.5 s
        inbox_max=100,
        idle_inboxes_max=10,
    )
    outcomes: Counter[str] = Counter()
    samples: list[tuple[int, int]] = []  # (seconds into the soak, memory added)
    async with AgentBus.open(settings) as bus:  # with its reaper, as in a server process
        await bus.presence.heartbeat(READER, ttl_seconds=3_600)
        base = await server_memory(run.redis)

        async def each_second(second: int) -> None:
            for n in range(plan.soak_rate):
                await bus.events.publish(AGENT, "soak.tick", {"n": n, "pad": PAD})
                to = f"ghost-{second}-{n}" if n % GHOST_EVERY == 0 else READER
                await send(bus, outcomes, AGENT, to)
            await bus.inbox.read(READER, limit=100)
            if (second + 1) % max(1, plan.soak_seconds // SAMPLES) == 0:
                samples.append((second + 1, await server_memory(run.redis) - base))

        await paced(plan.soak_seconds, each_second)
    lowered_figures(run, samples, outcomes, plan.soak_rate)


async def send(bus: AgentBus, outcomes: Counter[str], sender: str, to: str) -> None:
    try:
        await bus.inbox.send(sender, to, BODY)
        outcomes["sent"] += 1
    except InvalidArgument:
        outcomes["refused: idle inboxes"] += 1


def lowered_figures(run: Run, samples: list[tuple[int, int]], outcomes: Counter[str], rate: int) -> None:
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


async def defaults_soak(run: Run, minutes: float) -> None:
    """RATE events (about 1 KB each) and RATE messages a second, in a namespace with every setting at its
    default: 9 in 10 messages to a live reader that reads every second, 1 in 10 to a new id nobody reads
    (as to a worker gone before reading), from ten senders in turn (each its own share of idle inboxes)."""
    defaults = Settings.model_fields
    settings = run.namespace(  # the task bounds too (Run.namespace lifts them), though no task is made
        "soak-defaults",
        tasks_max=defaults["tasks_max"].default,
        tasks_max_per_owner=defaults["tasks_max_per_owner"].default,
    )
    seconds = round(minutes * 60)
    outcomes: Counter[str] = Counter()
    samples: list[tuple[int, int]] = [(0, 0)]
    families: dict[int, dict[str, tuple[int, int]]] = {}
    async with AgentBus.open(settings) as bus:
        await bus.presence.heartbeat(READER, ttl_seconds=seconds + 3_600)
        base = await server_memory(run.redis)

        async def each_second(second: int) -> None:
            for n in range(RATE):
                await bus.events.publish(AGENT, "soak.tick", {"n": n, "pad": PAD})
                ghost = n % GHOST_EVERY == 0
                to = f"gone-{second}-{n}" if ghost else READER
                await send(bus, outcomes, SENDERS[(second + n) % len(SENDERS)], to)
            await bus.inbox.read(READER, limit=RATE)
            if (second + 1) % SAMPLE_SECONDS == 0:
                samples.append((second + 1, await server_memory(run.redis) - base))
            if second + 1 == 60:
                families[60] = await family_sizes(run, settings.namespace)

        await paced(seconds, each_second)
        families[seconds] = await family_sizes(run, settings.namespace)
    defaults_figures(run, samples, families, outcomes)


async def family_sizes(run: Run, namespace: str) -> dict[str, tuple[int, int]]:
    """Per key family of the namespace (`inbox:`, `read:`, or a single key such as `events`): how many
    keys, and their bytes by MEMORY USAGE (name, value and keyspace entry; not the expiry table)."""
    prefix = Keys(namespace).prefix
    names = [key async for key in run.redis.scan_iter(match=f"{prefix}*", count=1_000)]
    sizes: dict[str, tuple[int, int]] = {}
    for start in range(0, len(names), 1_000):
        batch = names[start : start + 1_000]
        async with run.redis.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.memory_usage(key, samples=0)
            usage = await pipe.execute()
        for key, used in zip(batch, usage, strict=True):
            name = (key.decode() if isinstance(key, bytes) else key)[len(prefix) :]
            family = next((f for f in FAMILIES if name.startswith(f)), name)
            count, total = sizes.get(family, (0, 0))
            sizes[family] = (count + 1, total + int(used or 0))
    return sizes


def defaults_figures(
    run: Run,
    samples: list[tuple[int, int]],
    families: dict[int, dict[str, tuple[int, int]]],
    outcomes: Counter[str],
) -> None:
    memory = dict(samples)
    minutes = samples[-1][0] // 60
    how = f"{RATE} events and {RATE} messages a second, default settings; INFO used_memory less clients"
    for minute in range(1, minutes + 1):
        ten_second = " ".join(f"{memory[s] / 1e6:.2f}" for s in range(60 * minute - 50, 60 * minute + 1, 10))
        run.figures.append(
            Figure(
                DEFAULTS_SECTION,
                f"memory at {minute} min",
                memory[60 * minute] / 1e6,
                "MB",
                (how + "; " if minute == 1 else "") + f"every 10 s: {ten_second}",
            )
        )
    growth = [(memory[60 * m] - memory[60 * (m - 1)]) / 1e6 for m in range(2, minutes + 1)]
    run.figures += [
        Figure(DEFAULTS_SECTION, f"growth in minute {m}", g, "MB/min") for m, g in enumerate(growth, 2)
    ]
    first, end = families.get(60, {}), families.get(samples[-1][0], {})
    span = max(samples[-1][0] - 60, 1) / 60
    grown = {f: (end[f][1] - first.get(f, (0, 0))[1]) / span for f in end if end[f][1] >= SHOWN_BYTES}
    for family in sorted(grown, key=grown.__getitem__, reverse=True):
        (keys0, bytes0), (keys1, bytes1) = first.get(family, (0, 0)), end[family]
        run.figures.append(
            Figure(
                DEFAULTS_SECTION,
                f"{family}{'*' * family.endswith(':')} after minute 1",
                grown[family] / 1e6,
                "MB/min",
                f"{keys0:,} -> {keys1:,} keys, {bytes0 / 1e6:.2f} -> {bytes1 / 1e6:.2f} MB (MEMORY USAGE)",
            )
        )
    floor = FLAT_SHARE * memory.get(60, 0) / 1e6
    worst = max(growth, default=0.0)
    # The minute from which every later minute stays within the floor, if at least FLAT_MINUTES do.
    flat_from = next((m for m in range(1, minutes - FLAT_MINUTES + 1) if max(growth[m - 1 :]) <= floor), None)
    run.figures.append(
        Figure(
            DEFAULTS_SECTION,
            "flat from minute",
            flat_from,
            "min",
            f"at {memory[60 * flat_from] / 1e6:.2f} MB",
        )
        if flat_from
        else Figure(
            DEFAULTS_SECTION, "flat from minute", minutes, "min", "not within the soak: still growing"
        )
    )
    run.figures.append(
        Figure(
            DEFAULTS_SECTION,
            "growth after minute 1, worst minute",
            worst,
            "MB/min",
            ", ".join(f"{n:,} {what}" for what, n in outcomes.items()),
            goal=f"<={floor:.2f} MB/min ({FLAT_SHARE:.0%} of minute 1: flat)",
            goal_met=bool(growth) and worst <= floor,
        )
    )
