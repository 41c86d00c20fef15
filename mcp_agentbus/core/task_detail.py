"""One task in detail, for a person (the dashboard's task panel): the task as get_workflow shows it,
each recorded attempt with its holder (``attempts:<id>``, written by the claim and by whatever ended the
lease, include/attempts.lua), and its recent events, found by looking back a bounded stretch of the log."""

from __future__ import annotations

import json
from typing import Any, Literal, cast

from pydantic import BaseModel, Field

from mcp_agentbus.core.events import MAX_ENTRY_BYTES, event_view
from mcp_agentbus.core.models import EventView, iso
from mcp_agentbus.core.workflow_views import TaskView, task_view
from mcp_agentbus.errors import NotFound
from mcp_agentbus.ids import MAX_EVENT_SCAN_BYTES, TASK_ID_RE
from mcp_agentbus.redis.store import Store, require

EVENTS_SCANNED = 2_000  # newest entries of the event log looked at for a task's events
EVENTS_SHOWN = 20  # of those, the newest about the task
EVENTS_BATCH = 200

Outcome = Literal["done", "failed", "expired", "cancelled", "released"]


class Attempt(BaseModel):
    attempt: int = Field(description="1 for the first claim of a run; a retry_task starts a new run at 1.")
    holder: str = Field(description="The agent that claimed it.")
    fence: int
    claimed_at: str | None
    ended_at: str | None = None
    outcome: Outcome | None = Field(None, description="How it ended; null while its lease is held.")
    error: str | None = Field(None, description="A failed, expired or cancelled attempt's error, shortened.")


class TaskDetail(BaseModel):
    task: TaskView
    workflow_id: str | None = None
    description: str = ""
    attempt_history: list[Attempt] = Field(description="Oldest first; the newest 20 are kept.")
    events: list[EventView] = Field(description="The task's newest events, newest first.")
    events_scanned: int = Field(description="How many of the log's newest entries were looked at for them.")
    now_ms: int


async def read(store: Store, task_id: str) -> TaskDetail:
    """Task `task_id` with its attempts and recent events (NotFound once its record expired)."""
    require(task_id, TASK_ID_RE, "task_id")
    keys, redis = store.keys, store.redis
    with store.backend():
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.task(task_id))
            pipe.lrange(keys.attempts(task_id), 0, -1)
            record, attempts = cast(tuple[dict[str, str], list[str]], await pipe.execute())
        if not record:
            raise NotFound(
                f"task {task_id} does not exist (or ended longer ago than the retention)",
                hint="Pick a task of a workflow shown: finished tasks are kept for the retention only.",
            )
        deps = [d for d in record.get("deps", "").split(",") if d]
        async with redis.pipeline(transaction=False) as pipe:
            for dep in deps:
                pipe.hget(keys.task(dep), "key")
            dep_keys = cast(list[str | None], await pipe.execute())
    events, scanned = await _events_of(store, task_id)
    return TaskDetail(
        task=task_view({"id": task_id, **record}, {d: k for d, k in zip(deps, dep_keys, strict=True) if k}),
        workflow_id=record.get("wf") or None,
        description=record.get("desc", ""),
        attempt_history=[_attempt(json.loads(entry)) for entry in attempts],
        events=events,
        events_scanned=scanned,
        now_ms=await store.now_ms(),
    )


def _attempt(entry: dict[str, Any]) -> Attempt:
    return Attempt(
        attempt=int(entry["attempt"]),
        holder=str(entry["holder"]),
        fence=int(entry["fence"]),
        claimed_at=iso(int(entry["claimed"])),
        ended_at=iso(int(entry["ended"])) if "ended" in entry else None,
        outcome=entry.get("outcome"),
        error=entry.get("error"),
    )


async def _events_of(store: Store, task_id: str) -> tuple[list[EventView], int]:
    """The newest EVENTS_SHOWN events whose data names the task, looking back at most EVENTS_SCANNED
    entries and MAX_EVENT_SCAN_BYTES of the log; and how many entries were looked at."""
    found: list[EventView] = []
    scanned, read_bytes, start = 0, 0, "+"
    needle = json.dumps(task_id)  # the task's id as it appears in an event's JSON data
    with store.backend():
        while len(found) < EVENTS_SHOWN:
            count = min(
                EVENTS_BATCH, EVENTS_SCANNED - scanned, (MAX_EVENT_SCAN_BYTES - read_bytes) // MAX_ENTRY_BYTES
            )
            if count <= 0:
                break
            entries = cast(
                list[tuple[str, dict[str, str]]],
                await store.redis.xrevrange(store.keys.events, start, "-", count=count),
            )
            for event_id, fields in entries:
                scanned += 1
                read_bytes += len(event_id) + sum(len(k) + len(v) for k, v in fields.items())
                start = f"({event_id}"
                data = fields.get("data", "")
                if needle in data and _names(data, task_id):
                    found.append(event_view(event_id, fields))
                    if len(found) == EVENTS_SHOWN:
                        break
            if len(entries) < count:
                break
    return found, scanned


def _names(data: str, task_id: str) -> bool:
    try:
        parsed = json.loads(data)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("task") == task_id
