"""The task and workflow tools: create, claim, complete, fail, cancel, retry, and look at a workflow."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.types import CallToolResult
from pydantic import Field

from mcp_agentbus.core.control import MAX_REASON
from mcp_agentbus.core.models import (
    CancelResult,
    ClaimResult,
    CompleteResult,
    CreateTaskResult,
    CreateWorkflowResult,
    FailResult,
    Priority,
    RetryResult,
)
from mcp_agentbus.core.workflow_views import GetWorkflowReply, WorkflowSummary
from mcp_agentbus.core.workflows import WorkflowTask
from mcp_agentbus.ids import (
    MAX_CAPABILITIES,
    MAX_DEPENDENCIES,
    MAX_DESCRIPTION,
    MAX_ERROR,
    MAX_SUMMARY,
    MAX_TITLE,
    MAX_WORKFLOW_TASKS,
    AgentId,
    Capability,
    TaskId,
    WorkflowId,
)
from mcp_agentbus.server import calls
from mcp_agentbus.server.tooling import (
    FENCES,
    WAIT,
    AgentArg,
    Ctx,
    IdempotencyArg,
    LeaseToken,
    described,
    progress,
)


async def create_task(
    ctx: Ctx,
    title: Annotated[str, Field(min_length=1, max_length=MAX_TITLE, description="Short name of the work")],
    description: Annotated[
        str, Field(max_length=MAX_DESCRIPTION, description="What to do, for the worker")
    ] = "",
    capability: Annotated[Capability, Field(description="Which kind of agent may claim it")] = "any",
    priority: Annotated[Priority, Field(description="FIFO within a priority")] = "normal",
    payload: Annotated[Any, Field(description="Any JSON the worker needs, up to 64 KiB")] = None,
    depends_on: Annotated[
        list[TaskId], Field(max_length=MAX_DEPENDENCIES, description="Task ids that must be done first")
    ] = [],  # noqa: B006 - pydantic copies defaults
    workflow_id: Annotated[WorkflowId | None, Field(description="Add it to this running workflow")] = None,
    max_attempts: Annotated[int, Field(ge=1, le=100, description="Attempts before it is dead")] = 3,
    delay_seconds: Annotated[
        float, Field(ge=0, le=2_592_000, description="Not claimable before this delay")
    ] = 0,
    idempotency_key: IdempotencyArg = None,
    assignee: Annotated[AgentId | None, Field(description="Only this agent may claim it")] = None,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, CreateTaskResult]:
    """Queue one task for a worker; for several related tasks, use create_workflow."""
    call = calls.current()
    r = await call.bus.tasks.create(
        call.agent(agent),
        title=title,
        description=description,
        capability=capability,
        priority=priority,
        payload=payload,
        depends_on=depends_on,
        workflow_id=workflow_id,
        max_attempts=max_attempts,
        delay_seconds=delay_seconds,
        idempotency_key=idempotency_key,
        assignee=assignee,
    )
    return call.ok(
        r, f"Task {r.task_id} is {r.state}" + (" (created earlier with this key)." if r.duplicate else ".")
    )


async def create_workflow(
    ctx: Ctx,
    title: Annotated[str, Field(min_length=1, max_length=MAX_TITLE, description="Name of the whole job")],
    tasks: Annotated[
        list[WorkflowTask],
        Field(min_length=1, max_length=MAX_WORKFLOW_TASKS, description="The steps; depends_on names keys"),
    ],
    idempotency_key: IdempotencyArg = None,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, CreateWorkflowResult]:
    """Create a DAG of tasks in one call. A task is ready once all it depends on are done, and its
    claim carries their results as `inputs`. Returns workflow_id and task_ids by key."""
    call = calls.current()
    r = await call.bus.workflows.create(
        call.agent(agent), title=title, tasks=tasks, idempotency_key=idempotency_key
    )
    line = f"Workflow {r.workflow_id}: {len(r.task_ids)} task(s), ready now: {', '.join(r.ready)}."
    return call.ok(r, line, task_ids="task_ids")


async def claim_task(
    ctx: Ctx,
    capabilities: Annotated[
        list[Capability] | None,
        Field(max_length=MAX_CAPABILITIES, description="Default: yours plus any"),
    ] = None,
    wait_seconds: Annotated[float, Field(ge=0, description=WAIT)] = 0,
    lease_seconds: Annotated[int | None, Field(ge=1, le=86_400, description="Default 300")] = None,
    task_id: Annotated[TaskId | None, Field(description="Only this ready task")] = None,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, ClaimResult]:
    """Lease the next ready task (by priority, then age); end with complete_task or fail_task."""
    call = calls.current()
    r = await call.bus.tasks.claim(
        call.agent(agent),
        capabilities=capabilities,
        lease_seconds=lease_seconds,
        task_id=task_id,
        wait_seconds=wait_seconds,
        on_progress=progress(ctx),
    )
    if r.task is None:
        return call.ok(r, f"No task claimed: {r.reason}.", ready_elsewhere="ready_elsewhere")
    return call.ok(
        r,
        f"Claimed {r.task.id} '{r.task.title}' (attempt {r.task.attempt}/{r.task.max_attempts}); "
        f"lease until {r.lease.expires_at if r.lease else '?'}.",
        lease="lease",  # first: it must reach the model even when the task is too large for the text
        task="task",
    )


@described(f"Mark your claimed task done with its result. {FENCES}")
async def complete_task(
    ctx: Ctx,
    task_id: TaskId,
    lease_token: LeaseToken,
    result: Annotated[Any, Field(description="JSON up to 64 KiB")] = None,  # dependents get it as inputs
    summary: Annotated[str, Field(max_length=MAX_SUMMARY)] = "",
    agent: AgentArg = None,
) -> Annotated[CallToolResult, CompleteResult]:
    call = calls.current()
    r = await call.bus.tasks.complete(call.agent(agent), task_id, lease_token, result=result, summary=summary)
    line = f"Task {task_id} is done" + (" (already recorded)" if r.already_completed else "")
    if r.unblocked:
        line += f"; now ready: {', '.join(r.unblocked)}"
    if r.progress is not None:
        line += f"; workflow {r.workflow_id} {r.workflow_status}, {r.progress.done}/{r.progress.total} done"
    return call.ok(r, line + ".")


@described(f"Your claimed task failed: retried until max_attempts, then dead. {FENCES}")
async def fail_task(
    ctx: Ctx,
    task_id: TaskId,
    lease_token: LeaseToken,
    error: Annotated[str, Field(min_length=1, max_length=MAX_ERROR)],
    retry: Annotated[bool, Field(description="false: dead now")] = True,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, FailResult]:
    call = calls.current()
    r = await call.bus.tasks.fail(call.agent(agent), task_id, lease_token, error=error, retry=retry)
    if r.state == "dead":
        line = f"Task {task_id} is dead after {r.attempts} attempt(s)"
        if r.cancelled:
            line += f"; cancelled dependents: {', '.join(r.cancelled)}"
    else:
        line = (
            f"Task {task_id} will be retried (attempt {r.attempts}/{r.max_attempts} failed) at {r.retry_at}"
        )
    return call.ok(r, line + ".")


async def get_workflow(
    ctx: Ctx,
    workflow_id: WorkflowId | None = None,
    detail: Annotated[Literal["full", "summary"], Field(description="summary: no results")] = "full",
    agent: AgentArg = None,
) -> Annotated[CallToolResult, GetWorkflowReply]:
    """A workflow's status, progress and tasks; without workflow_id, recent workflows."""
    call = calls.current()
    call.reader(agent)
    if workflow_id is not None and detail == "summary":
        brief = await call.bus.workflows.brief(workflow_id)
        await call.bus.gather_notices()
        return call.ok(brief, _progress_line(brief.workflow), task="workflow.tasks")
    r = await call.bus.workflows.get(workflow_id)
    await call.bus.gather_notices()
    if r.workflow is not None:
        return call.ok(r, _progress_line(r.workflow), task="workflow.tasks")
    return call.ok(r, f"{len(r.workflows or [])} recent workflow(s).", workflow="workflows")


def _progress_line(w: WorkflowSummary) -> str:
    return f"Workflow {w.workflow_id} '{w.title}' is {w.status}: {w.progress.done}/{w.progress.total} done."


Reason = Annotated[str, Field(min_length=1, max_length=MAX_REASON)]


async def cancel_task(
    ctx: Ctx,
    reason: Reason,
    task_id: TaskId | None = None,
    workflow_id: Annotated[WorkflowId | None, Field(description="Cancel all its tasks instead")] = None,
    idempotency_key: IdempotencyArg = None,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, CancelResult]:
    """Cancel a task (and what depends on it) or a whole workflow; a holder loses its lease at once.
    Finished tasks stay."""
    call = calls.current()
    r = await call.bus.control.cancel(
        call.agent(agent),
        task_id=task_id,
        workflow_id=workflow_id,
        reason=reason,
        idempotency_key=idempotency_key,
    )
    line = f"Cancelled {len(r.cancelled)} task(s)" + (f": {', '.join(r.cancelled)}" if r.cancelled else "")
    if r.already_final:
        line += f"; already finished, left as they were: {', '.join(r.already_final)}"
    return call.ok(r, line + ".")


async def retry_task(
    ctx: Ctx,
    task_id: TaskId,
    reason: Reason,
    idempotency_key: IdempotencyArg = None,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, RetryResult]:
    """Run a dead or cancelled task again with fresh attempts; what was cancelled because of it comes
    back too."""
    call = calls.current()
    r = await call.bus.control.retry(
        call.agent(agent), task_id, reason=reason, idempotency_key=idempotency_key
    )
    line = f"Task {r.task_id} is {r.state} again"
    if r.restored:
        line += f"; restored: {', '.join(r.restored)}"
    return call.ok(r, line + ".")
