"""The namespace at a glance, read without changing anything: what `agentbus status`, `agentbus watch`,
the demo and the web dashboard (`dashboard.py`) show."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import AgentView, EventView, HeldLock
from mcp_agentbus.core.workflow_views import WorkflowSummary, WorkflowView

DEAD_SHOWN = 5


@dataclass(frozen=True)
class DeadTask:
    id: str
    title: str
    attempts: int
    error: str


@dataclass(frozen=True)
class Snapshot:
    namespace: str
    now_ms: int
    agents: list[AgentView]
    workflows: list[WorkflowSummary]
    ready: dict[str, int]  # queue depth by capability
    delayed: int
    claimed: int
    dead_total: int
    dead: list[DeadTask]  # the most recent ones
    locks: list[HeldLock]
    events: list[EventView]
    workflow: WorkflowView | None = None  # one workflow followed task by task

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=lambda m: m.model_dump(mode="json"), ensure_ascii=False)


async def take(bus: AgentBus, *, workflow_id: str | None = None, events: int = 8) -> Snapshot:
    """The namespace as it is now (each part read consistently on its own)."""
    keys, redis = bus.store.keys, bus.redis
    with bus.store.backend():
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.counters)
            pipe.zcard(keys.delayed)
            pipe.zcard(keys.leases)
            pipe.zcard(keys.dead)
            pipe.zrevrange(keys.dead, 0, DEAD_SHOWN - 1)
            counters, delayed, claimed, dead_total, dead_ids = await pipe.execute()
        async with redis.pipeline(transaction=False) as pipe:
            for task_id in dead_ids:
                pipe.hmget(keys.task(task_id), "title", "attempts", "error")
            dead_fields = await pipe.execute()
    followed = (await bus.workflows.get(workflow_id)).workflow if workflow_id else None
    return Snapshot(
        namespace=bus.settings.namespace,
        now_ms=await bus.store.now_ms(),
        agents=(await bus.presence.list_agents(include_gone=True)).agents,  # a crash shows as gone
        workflows=(await bus.workflows.get(None, limit=10)).workflows or [],
        ready={
            k.removeprefix("ready:"): int(v) for k, v in counters.items() if k.startswith("ready:") and int(v)
        },
        delayed=delayed,
        claimed=claimed,
        dead_total=dead_total,
        dead=[
            DeadTask(task_id, title or "", int(attempts or 0), error or "")
            for task_id, (title, attempts, error) in zip(dead_ids, dead_fields, strict=True)
        ],
        locks=(await bus.locks.held()).locks,
        events=(await bus.events.recent("*", limit=events)).events if events else [],
        workflow=followed,
    )
