"""How long a run measures each thing (the full and the quick plan), and what one run shares."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from harness import Budget, Figure
from processes import AGENT
from workloads import create_tasks

from mcp_agentbus.redis.connection import Redis
from mcp_agentbus.settings import Settings


@dataclass(frozen=True)
class Plan:
    warmup: Budget
    redis: Budget  # PING, raw scripts, core API
    memory: Budget  # MCP in-memory
    stdio: Budget  # MCP over stdio, per mode
    http: Budget  # MCP over streamable HTTP, one client, per mode
    concurrent: Budget  # claim+complete pairs of all concurrent agents together, per configuration
    agents: tuple[int, ...]  # how many concurrent agents, one configuration each
    rounds: int  # interleaved rounds per comparison
    depths: tuple[int, ...]  # tasks queued while claim latency is measured (scale)
    depth: Budget  # claims measured at each depth
    heartbeat_agents: int  # agents heartbeating once a second against one HTTP server process
    heartbeat_seconds: float  # how long they keep it up, after all have joined
    retained_tasks: int  # tasks completed before the memory they keep is measured
    stream: int  # events published, and messages sent, in the bounded-memory stream
    waiters: int  # claimers waiting at once while tasks are created one at a time
    chain: int  # tasks in the dependency chain whose head dies (cascade), among depths[-1] tasks
    soak_seconds: int  # how long the soak sends events and messages at soak_rate, memory sampled
    soak_rate: int  # events, and messages, per second in the soak
    soak_minutes: int  # the soak with the default settings (bench.py --soak-minutes; 0: none)
    server_cpu_calls: int  # sequential calls over which a server's CPU per call is measured
    redis_time_calls: int  # calls of each raw script step whose time inside Redis is measured

    def tasks_needed(self, budget: Budget) -> int:
        """Tasks one claim+complete workload can consume: its warm-up and every round."""
        return self.warmup.ops + self.rounds * budget.share(self.rounds).ops


# The full run took about 4 minutes (248 s) on a 2-core VM before this round's sections, of which the
# 1M-task fill for `depths` is about 40 s and the 32 stdio servers' start about 10 s; the cascade section
# adds about 47 s (its own 1M-task namespace: a 100k chain in 4 s, the fill 35 s, the cascade 3 s), the
# soak 60 s, the waiting claimers a few seconds.
FULL = Plan(
    warmup=Budget(100, 1),
    redis=Budget(5_000, 2),
    memory=Budget(2_000, 2),
    stdio=Budget(1_000, 2),
    http=Budget(1_000, 2),
    concurrent=Budget(2_000, 2),
    agents=(1, 8, 32),
    rounds=5,
    depths=(10, 10_000, 1_000_000),
    depth=Budget(1_000, 3),
    heartbeat_agents=1_000,
    heartbeat_seconds=20,
    retained_tasks=30_000,
    stream=50_000,
    waiters=1_000,
    chain=100_000,
    soak_seconds=60,
    soak_rate=100,
    soak_minutes=0,
    server_cpu_calls=1_000,
    redis_time_calls=500,
)
# --quick only checks that every path runs (CI: make bench-quick); about 30 s.
QUICK = Plan(
    warmup=Budget(10, 0.5),
    redis=Budget(100, 0.2),
    memory=Budget(50, 0.3),
    stdio=Budget(30, 0.3),
    http=Budget(30, 0.3),
    concurrent=Budget(40, 0.3),
    agents=(1, 2, 4),
    rounds=2,
    depths=(10, 1_000, 10_000),
    depth=Budget(100, 1),
    heartbeat_agents=50,
    heartbeat_seconds=2,
    retained_tasks=2_000,
    stream=10_000,
    waiters=100,
    chain=2_000,
    soak_seconds=6,
    soak_rate=100,
    soak_minutes=0,
    server_cpu_calls=100,
    redis_time_calls=20,
)


BENCH_TASKS_MAX = 2_000_000  # the most tasks any section queues (a million, and a chain of 100,000)


@dataclass
class Run:
    """What one benchmark run shares: the Redis, the plan, the namespaces to clean up, and what went
    wrong without stopping the run."""

    redis_url: str
    plan: Plan
    redis: Redis
    redis_pid: int | None = None  # when the run started its own redis-server
    namespaces: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # wrong results: the run exits 1
    warnings: list[str] = field(default_factory=list)  # for example a traceback in a server log
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each section
    figures: list[Figure] = field(default_factory=list)  # what is not a latency row: memory, lag, ...

    def namespace(self, label: str, **settings: Any) -> Settings:
        """Settings (`settings` over the defaults) of a new, empty namespace, dropped when the run ends
        if not before. One bench agent fills namespaces with up to 1M tasks: the task bounds (which the
        tests check) are lifted to that here."""
        namespace = f"bench-{secrets.token_hex(3)}-{label}"
        self.namespaces.append(namespace)
        tasks = {"tasks_max": BENCH_TASKS_MAX, "tasks_max_per_owner": BENCH_TASKS_MAX}
        return Settings(redis_url=self.redis_url, namespace=namespace, agent=AGENT, **(tasks | settings))

    async def namespace_with_tasks(self, label: str, budget: Budget, workloads: int = 1) -> Settings:
        """Settings of a fresh namespace holding the tasks `workloads` claim+complete workloads can
        consume."""
        settings = self.namespace(label)
        await create_tasks(self.redis, settings, workloads * self.plan.tasks_needed(budget))
        return settings
