"""Workflows: a DAG of tasks created atomically, and views of its progress."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcp_agentbus.core.models import CreateWorkflowResult, Priority
from mcp_agentbus.core.presence import unregistered
from mcp_agentbus.core.tasks import idempotency_scope
from mcp_agentbus.core.workflow_views import (
    GetWorkflowBriefResult,
    GetWorkflowResult,
    TaskBrief,
    WorkflowBrief,
    WorkflowView,
    fit_tasks,
    summary_of,
    task_view,
)
from mcp_agentbus.errors import InvalidArgument, NotFound, PayloadTooLarge, explain_validation
from mcp_agentbus.ids import (
    AGENT_RE,
    CAPABILITY_PATTERN,
    IDEMPOTENCY_KEY_RE,
    MAX_DEPENDENCIES,
    MAX_DESCRIPTION,
    MAX_TITLE,
    MAX_WORKFLOW_JSON_BYTES,
    MAX_WORKFLOW_TASKS,
    WORKFLOW_ID_RE,
    AgentId,
    TaskKey,
    encode_json,
)
from mcp_agentbus.redis.replies import CREATE_WORKFLOW
from mcp_agentbus.redis.store import Store, require


class WorkflowTask(BaseModel):
    """One task of a workflow, as create_workflow takes it."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field must not vanish silently

    key: TaskKey = Field(description="Unique within the workflow; dependents and `inputs` refer to it.")
    title: str = Field(min_length=1, max_length=MAX_TITLE)
    description: str = Field(
        "", max_length=MAX_DESCRIPTION, description="What to do, for the agent that claims it."
    )
    capability: str = Field(
        "any", pattern=CAPABILITY_PATTERN, description="Which kind of agent may claim it."
    )
    priority: Priority = "normal"
    payload: Any = Field(None, description="Any JSON the worker needs.")
    depends_on: list[TaskKey] = Field(
        default_factory=list,
        max_length=MAX_DEPENDENCIES,
        description="Keys of tasks that must be done first.",
    )
    max_attempts: int = Field(3, ge=1, le=100, description="Attempts before the task is dead.")
    assignee: AgentId | None = Field(None, description="Only this agent may claim it.")


def order_tasks(tasks: Sequence[WorkflowTask]) -> list[list[int]]:
    """Each task's dependencies as 1-based positions, refusing duplicates, unknown keys and cycles."""
    if not tasks:
        raise InvalidArgument(
            "a workflow needs at least one task", hint="Pass tasks: [{key, title, depends_on}, ...]."
        )
    if len(tasks) > MAX_WORKFLOW_TASKS:
        raise InvalidArgument(
            f"a workflow may have at most {MAX_WORKFLOW_TASKS} tasks, not {len(tasks)}",
            hint="Split the work into workflows of fewer steps; create_task with depends_on links tasks "
            "across them.",
        )
    position: dict[str, int] = {}
    for i, task in enumerate(tasks, start=1):
        if task.key in position:
            raise InvalidArgument(
                f"task key {task.key!r} is used twice; nothing was created",
                hint="Give each task its own key: depends_on names tasks by key.",
            )
        position[task.key] = i
    deps: list[list[int]] = []
    for task in tasks:
        for dep in task.depends_on:
            if dep not in position:
                raise InvalidArgument(
                    f"task {task.key!r} depends on unknown key {dep!r}; nothing was created",
                    hint=f"depends_on names keys of tasks in the same workflow: {sorted(position)[:20]}.",
                )
            if dep == task.key:
                raise InvalidArgument(
                    f"task {task.key!r} depends on itself; nothing was created",
                    hint="Remove its own key from its depends_on.",
                )
        deps.append([position[d] for d in dict.fromkeys(task.depends_on)])
    cycle = _find_cycle(tasks, deps)
    if cycle:
        raise InvalidArgument(
            "dependencies form a cycle: " + " -> ".join(cycle),
            hint="Nothing was created. A workflow runs each task after those it depends on: drop one "
            "depends_on along the cycle.",
        )
    return deps


def _find_cycle(tasks: Sequence[WorkflowTask], deps: list[list[int]]) -> list[str]:
    """Keys along one dependency cycle, or [] when the graph is a DAG (iterative DFS)."""
    state = [0] * len(tasks)  # 0 unseen, 1 on the current path, 2 finished
    for root in range(len(tasks)):
        if state[root]:
            continue
        path, stack = [root], [iter(deps[root])]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            node = nxt - 1
            if state[node] == 1:
                loop = [*path[path.index(node) :], node]
                return [tasks[i].key for i in loop]
            if state[node] == 0:
                state[node] = 1
                path.append(node)
                stack.append(iter(deps[node]))
    return []


class Workflows:
    """Create a DAG of tasks in one call, and look at a workflow or the recent ones."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(
        self,
        agent: str,
        *,
        title: str,
        tasks: Sequence[WorkflowTask | Mapping[str, Any]],
        idempotency_key: str | None = None,
    ) -> CreateWorkflowResult:
        require(agent, AGENT_RE, "agent id")
        if idempotency_key is not None:
            require(idempotency_key, IDEMPOTENCY_KEY_RE, "idempotency_key")
        try:
            specs = [t if isinstance(t, WorkflowTask) else WorkflowTask.model_validate(t) for t in tasks]
        except ValidationError as exc:
            raise InvalidArgument(f"invalid workflow task: {explain_validation(exc)}") from exc
        deps = order_tasks(specs)
        payloads = [encode_json(t.payload, f"payload of task {t.key!r}") for t in specs]
        total = sum(len(p) for p in payloads)
        if total > MAX_WORKFLOW_JSON_BYTES:
            raise PayloadTooLarge(
                f"this workflow's payloads total {total:,} bytes; the limit is {MAX_WORKFLOW_JSON_BYTES:,}"
            )
        spec = [
            {
                "key": t.key,
                "title": t.title,
                "desc": t.description,
                "cap": t.capability,
                "prio": t.priority,
                "max_attempts": t.max_attempts,
                "assignee": t.assignee or "",
                "deps": d,
            }
            for t, d in zip(specs, deps, strict=True)
        ]
        created = await self._store.run(
            CREATE_WORKFLOW,
            agent,
            idempotency_scope("create_workflow", agent, idempotency_key),
            title,
            json.dumps(spec),
            *payloads,
        )
        first = created.result
        return CreateWorkflowResult(
            workflow_id=first["workflow_id"],
            task_ids=dict(sorted(first["task_ids"].items(), key=lambda kv: int(kv[1][2:]))),  # creation order
            ready=list(first["ready"] or []),  # Lua's cjson writes an empty list as {}
            duplicate=created.duplicate,
            notices=[]
            if created.duplicate
            else await unregistered(self._store, [t.assignee for t in specs], "workflow"),
        )

    async def get(self, workflow_id: str | None = None, *, limit: int = 20) -> GetWorkflowResult:
        """One workflow with every task, or (without an id) the most recent workflows."""
        keys = self._store.keys
        if limit < 1:
            raise InvalidArgument("limit must be at least 1")
        if workflow_id is None:
            with self._store.backend():
                async with self._store.redis.pipeline(transaction=False) as pipe:
                    pipe.zrevrange(keys.workflows, 0, limit - 1)
                    pipe.zcard(keys.workflows)
                    ids, known = cast(tuple[list[str], int], tuple(await pipe.execute()))
                async with self._store.redis.pipeline(transaction=False) as pipe:
                    for wf in ids:
                        pipe.hgetall(keys.workflow(wf))
                    records = await pipe.execute()
            more = [] if known <= len(ids) else [f"The {len(ids)} newest of {known:,} workflows are shown."]
            return GetWorkflowResult(workflows=[summary_of(r) for r in records if r], notices=more)

        record, tasks = await self._load(workflow_id)
        key_of = {t["id"]: t.get("key") or t["id"] for t in tasks}
        shown, results_left_out, tasks_left_out = fit_tasks([task_view(t, key_of) for t in tasks])
        notices = []
        if results_left_out:
            notices.append(
                f"Results of {len(results_left_out)} task(s) left out, too large for one reply: "
                f"{', '.join(results_left_out)} (their dependents still get them as inputs)."
            )
        if tasks_left_out:
            left_out = ", ".join(tasks_left_out)
            notices.append(f"{len(tasks_left_out)} task(s) left out, too many for one reply: {left_out}.")
        view = WorkflowView(
            **summary_of(record).model_dump(),
            tasks=shown,
            results_left_out=results_left_out,
            tasks_left_out=tasks_left_out,
        )
        return GetWorkflowResult(workflow=view, notices=notices)

    async def brief(self, workflow_id: str) -> GetWorkflowBriefResult:
        """One workflow in summary, for a coordinator that follows it: its progress, and each task's
        state, assignee and attempts, without results, summaries or errors. Every task fits in one reply
        (MAX_WORKFLOW_TASKS briefs of at most a few hundred bytes each: tests/core/test_workflows.py)."""
        record, tasks = await self._load(workflow_id)
        briefs = [TaskBrief.model_validate(task_view(t, {}), from_attributes=True) for t in tasks]
        return GetWorkflowBriefResult(workflow=WorkflowBrief(**summary_of(record).model_dump(), tasks=briefs))

    async def _load(self, workflow_id: str) -> tuple[dict[str, str], list[dict[str, str]]]:
        """A workflow's record and its tasks' records, in creation order."""
        require(workflow_id, WORKFLOW_ID_RE, "workflow_id")
        keys = self._store.keys
        with self._store.backend():
            record = cast(dict[str, str], await self._store.redis.hgetall(keys.workflow(workflow_id)))
            if not record:
                raise NotFound(f"workflow {workflow_id} does not exist (or finished before the retention)")
            async with self._store.redis.pipeline(transaction=False) as pipe:
                for task_id in record.get("tasks", "").split(","):
                    pipe.hgetall(keys.task(task_id))
                tasks = await pipe.execute()
        return record, [t for t in tasks if t]
