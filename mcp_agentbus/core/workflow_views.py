"""What get_workflow shows: a workflow with its tasks (in full, or in summary), or the recent
workflows; the models of those views and how task records become them, within one reply."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from mcp_agentbus.core.models import Priority, Progress, Result, TaskState, WorkflowStatus, iso
from mcp_agentbus.ids import MAX_REPLY_BYTES, REPLY_ROOM

_PROGRESS_STATES = ("blocked", "ready", "delayed", "claimed", "done", "dead", "cancelled")


class TaskProgress(BaseModel):
    percent: float
    message: str = ""
    at: str | None = Field(None, description="When its holder reported it (UTC).")


class TaskView(BaseModel):
    id: str
    key: str | None = None
    title: str
    state: TaskState
    capability: str
    priority: Priority
    assignee: str | None = Field(
        None,
        description="The agent it is assigned to (only it may claim it), holding its lease, or that did it.",
    )
    attempts: int
    max_attempts: int
    depends_on: list[str]
    result: Any = None
    summary: str | None = None
    error: str | None = None
    lease_expires_at: str | None = None
    progress: TaskProgress | None = Field(None, description="A claimed task's latest progress report.")
    due_at: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class TaskBrief(BaseModel):
    """A task in get_workflow's summary: where it stands, who has it and how far it came, not what it
    produced."""

    id: str
    key: str | None = None
    state: TaskState
    assignee: str | None = Field(None, description="The agent holding the lease, or that completed it.")
    attempts: int
    progress: TaskProgress | None = None


class WorkflowSummary(BaseModel):
    workflow_id: str
    title: str
    status: WorkflowStatus
    progress: Progress
    created_at: str | None = None
    finished_at: str | None = None


class WorkflowView(WorkflowSummary):
    tasks: list[TaskView]
    results_left_out: list[str] = Field(
        default_factory=list,
        description="Tasks shown without result, summary and error: they did not fit in one reply.",
    )
    tasks_left_out: list[str] = Field(
        default_factory=list, description="Tasks not shown at all: too many to fit in one reply."
    )


class WorkflowBrief(WorkflowSummary):
    tasks: list[TaskBrief]


class GetWorkflowBriefResult(Result):
    workflow: WorkflowBrief = Field(description="The workflow asked for, in summary: no results or errors.")


class GetWorkflowResult(Result):
    workflow: WorkflowView | None = Field(None, description="The workflow asked for.")
    workflows: list[WorkflowSummary] | None = Field(
        None, description="Recent workflows, when no id was given."
    )


class GetWorkflowReply(Result):
    """get_workflow's result in either detail: the SDK checks a tool's result against one model."""

    workflow: WorkflowView | WorkflowBrief | None = None
    workflows: list[WorkflowSummary] | None = None


def fit_tasks(views: list[TaskView]) -> tuple[list[TaskView], list[str], list[str]]:
    """The task views that fit in one reply: first every task without its result, summary and error (in
    order, while they fit), then those, in order, while they fit. Returns what is shown, the ids whose
    result, summary and error were left out, and the ids of tasks left out altogether."""
    budget = MAX_REPLY_BYTES - REPLY_ROOM
    bare = [v.model_copy(update={"result": None, "summary": None, "error": None}) for v in views]
    sizes = [_size(b) for b in bare]
    count, used = 0, 0
    while count < len(views) and used + sizes[count] <= budget:
        used += sizes[count]
        count += 1
    shown, results_left_out = [], []
    for view, without, base in zip(views[:count], bare, sizes, strict=False):
        extra = _size(view) - base
        if extra and used + extra > budget:
            shown.append(without)
            results_left_out.append(view.id)
        else:
            shown.append(view)
            used += extra
    return shown, results_left_out, [v.id for v in views[count:]]


def _size(view: TaskView) -> int:
    return len(view.model_dump_json().encode())


def summary_of(record: dict[str, str]) -> WorkflowSummary:
    counts = {state: int(record.get(f"n:{state}", 0)) for state in _PROGRESS_STATES}
    return WorkflowSummary(
        workflow_id=record["id"],
        title=record.get("title", ""),
        status=record["status"],
        progress=Progress(total=int(record.get("total", 0)), **counts),
        created_at=iso(record.get("created")),
        finished_at=iso(record.get("finished")),
    )


def task_view(t: dict[str, str], key_of: Mapping[str, str]) -> TaskView:
    """A task record as agents see it; `key_of` names dependencies by key where known."""
    deps = [d for d in t.get("deps", "").split(",") if d]
    state = t["state"]
    return TaskView(
        id=t["id"],
        key=t.get("key") or None,
        title=t.get("title", ""),
        state=state,
        capability=t.get("cap", "any"),
        priority=t.get("prio", "normal"),
        assignee=t.get("owner") or t.get("completed_by") or t.get("assignee") or None,
        attempts=int(t.get("attempts", 0)),
        max_attempts=int(t.get("max_attempts", 1)),
        depends_on=[key_of.get(d, d) for d in deps],
        result=json.loads(t["result"]) if "result" in t else None,
        summary=t.get("summary") or None,
        error=t.get("error") or None,
        lease_expires_at=iso(t.get("lease_exp")),
        progress=_progress(t) if state == "claimed" else None,
        due_at=iso(t.get("due")),
        created_at=iso(t.get("created")),
        updated_at=iso(t.get("updated")),
    )


def _progress(t: dict[str, str]) -> TaskProgress | None:
    """The latest progress its holder reported (heartbeat), if any."""
    if "progress_pct" not in t:
        return None
    return TaskProgress(
        percent=float(t["progress_pct"]), message=t.get("progress_msg", ""), at=iso(t.get("progress_at"))
    )
