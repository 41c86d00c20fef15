"""What `agentbus status`, `agentbus watch` and the demo show: a snapshot of one namespace, read without
changing anything, and how it looks in a terminal."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import AgentView, EventView, HeldLock, WorkflowSummary, WorkflowView

DEAD_SHOWN = 5
TASK_ORDER = ("claimed", "dead", "delayed", "ready", "blocked", "done", "cancelled")  # the busiest first
STATE_STYLE = {
    "done": "green",
    "claimed": "cyan",
    "ready": "yellow",
    "delayed": "magenta",
    "blocked": "dim",
    "dead": "bold red",
    "cancelled": "dim red",
    "running": "cyan",
    "failed": "bold red",
}


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
        agents=(await bus.presence.list_agents()).agents,
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


def render(snap: Snapshot, *, title: str | None = None, max_tasks: int | None = None) -> RenderableType:
    """Everything at a glance: agents, workflows (one of them task by task, the busiest first when
    there are more than `max_tasks`), queues, locks, dead tasks and the latest events."""
    alive = sum(a.alive for a in snap.agents)
    running = sum(w.status == "running" for w in snap.workflows)
    header = Text.assemble(
        (title or "agentbus", "bold"),
        f"  namespace {snap.namespace} · {_clock(snap.now_ms)} · {alive} agents alive · "
        f"{running} workflows running",
    )
    parts: list[RenderableType] = [header, _agents(snap), _workflows(snap)]
    if snap.workflow is not None:
        parts.append(_tasks(snap.workflow, max_tasks))
    parts.append(_queues(snap))
    if snap.locks:
        parts.append(_locks(snap))
    if snap.dead:
        parts.append(_dead(snap))
    if snap.events:
        parts.append(_events(snap))
    return Group(*parts)


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, expand=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _agents(snap: Snapshot) -> RenderableType:
    if not snap.agents:
        return Text("no agents (an agent appears with its first heartbeat)", style="dim")
    table = _table("Agents", "agent", "status", "holds", "locks", "last seen")
    for a in snap.agents:
        status = Text(a.status, style="" if a.alive else "dim red")
        seen = f"{_ago(snap.now_ms, a.last_seen)} ago" if a.last_seen else ""
        table.add_row(a.agent, status, " ".join(a.tasks), " ".join(a.locks), seen)
    return table


def _workflows(snap: Snapshot) -> RenderableType:
    if not snap.workflows:
        return Text("no workflows", style="dim")
    table = _table("Workflows", "workflow", "title", "status", "progress", "claimed", "ready", "dead")
    for w in snap.workflows:
        p = w.progress
        table.add_row(
            w.workflow_id,
            w.title,
            Text(w.status, style=STATE_STYLE.get(w.status, "")),
            _bar(p.done, p.total),
            str(p.claimed),
            str(p.ready + p.delayed),
            Text(str(p.dead), style="bold red" if p.dead else ""),
        )
    return table


def _tasks(workflow: WorkflowView, limit: int | None) -> RenderableType:
    table = _table(f"Tasks of {workflow.workflow_id}", "task", "title", "state", "agent", "attempt", "note")
    tasks = workflow.tasks
    if limit is not None and len(tasks) > limit:
        tasks = sorted(tasks, key=lambda t: TASK_ORDER.index(t.state))[:limit]
    for t in tasks:
        note = t.error or t.summary or ""
        table.add_row(
            t.key or t.id,
            t.title,
            Text(t.state, style=STATE_STYLE.get(t.state, "")),
            t.assignee or "",
            f"{t.attempts}/{t.max_attempts}" if t.attempts else "",
            note[:60],
        )
    if len(tasks) < len(workflow.tasks):
        table.add_row(Text(f"… and {len(workflow.tasks) - len(tasks)} more", style="dim"))
    return table


def _queues(snap: Snapshot) -> RenderableType:
    ready = ", ".join(f"{cap} {n}" for cap, n in sorted(snap.ready.items())) or "none"
    return Text.assemble(
        ("Queues  ", "bold"),
        f"ready: {ready} · delayed {snap.delayed} · claimed {snap.claimed} · ",
        (f"dead {snap.dead_total}", "bold red" if snap.dead_total else ""),
    )


def _locks(snap: Snapshot) -> RenderableType:
    table = _table("Locks", "resource", "holder", "fence", "expires in")
    for lock in snap.locks:
        expires = f"{-_age_s(snap.now_ms, lock.expires_at):.0f} s" if lock.expires_at else ""
        table.add_row(lock.resource, lock.holder, str(lock.fencing_token), expires)
    return table


def _dead(snap: Snapshot) -> RenderableType:
    table = _table(f"Dead tasks ({snap.dead_total})", "task", "title", "attempts", "last error")
    for d in snap.dead:
        table.add_row(d.id, d.title, str(d.attempts), Text(d.error[:80], style="red"))
    return table


def _events(snap: Snapshot) -> RenderableType:
    table = _table("Events", "at", "topic", "agent", "data")
    for column in table.columns:  # one line per event; the data gives way
        column.no_wrap = True
    table.columns[-1].overflow = "ellipsis"
    for e in snap.events:
        data = "" if e.data is None else json.dumps(e.data, ensure_ascii=False)
        table.add_row(e.at[11:19], e.topic, e.agent or "", data[:70])
    return table


def _bar(done: int, total: int, width: int = 16) -> Text:
    filled = round(width * done / total) if total else 0
    return Text.assemble(("█" * filled, "green"), ("░" * (width - filled), "dim"), f" {done}/{total}")


def _age_s(now_ms: int, iso_time: str) -> float:
    return now_ms / 1000 - datetime.fromisoformat(iso_time).timestamp()


def _ago(now_ms: int, iso_time: str) -> str:
    return f"{max(0.0, _age_s(now_ms, iso_time)):.0f} s"


def _clock(now_ms: int) -> str:
    return datetime.fromtimestamp(now_ms / 1000).strftime("%H:%M:%S")
