"""The MCP tools: typed, bounded arguments in; one core call; a structured result plus a readable line out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.events import MAX_LIMIT
from mcp_agentbus.core.inbox import MAX_READ
from mcp_agentbus.core.models import (
    ClaimResult,
    CompleteResult,
    CreateTaskResult,
    CreateWorkflowResult,
    FailResult,
    GetWorkflowResult,
    HeartbeatResult,
    ListAgentsResult,
    LockResult,
    Priority,
    PublishResult,
    ReadEventsResult,
    ReadInboxResult,
    ReleaseResult,
    SendResult,
)
from mcp_agentbus.core.workflows import WorkflowTask
from mcp_agentbus.ids import (
    MAX_BODY,
    MAX_CAPABILITIES,
    MAX_DEPENDENCIES,
    MAX_DESCRIPTION,
    MAX_ERROR,
    MAX_NOTE,
    MAX_STATUS,
    MAX_SUBJECT,
    MAX_SUMMARY,
    MAX_TITLE,
    MAX_WORKFLOW_TASKS,
    AgentId,
    Capability,
    Cursor,
    IdempotencyKey,
    MessageId,
    Recipient,
    Resource,
    TaskId,
    ThreadId,
    Topic,
    TopicPattern,
    WorkflowId,
)
from mcp_agentbus.server.auth import acting_agent, current_grant
from mcp_agentbus.server.namespaces import Namespaces, Served
from mcp_agentbus.server.replies import keep_fitting, ok
from mcp_agentbus.settings import Settings


@dataclass
class App:
    """What the server's lifespan holds for the tools: the bus of the caller's namespace (its token's,
    else the server's) and who the caller may act as."""

    namespaces: Namespaces
    settings: Settings

    @property
    def namespace(self) -> str:
        grant = current_grant()
        return self.settings.namespace if grant is None else grant.namespace

    @property
    def served(self) -> Served:
        return self.namespaces.get(self.namespace)

    @property
    def bus(self) -> AgentBus:
        return self.served.bus

    def agent(self, agent: str | None) -> str:
        """The acting agent: the argument, else the token's or the server's identity; checked against
        the token."""
        return acting_agent(agent, self.settings.agent)


Ctx = Context[App, Any]

# Every acting tool takes `agent`; the server's instructions say what it is, once, not each listing.
AgentArg = AgentId | None
IdempotencyArg = IdempotencyKey | None  # a well-known idea: its name says it
LeaseToken = Annotated[str, Field(min_length=1, max_length=64)]  # claim_task's description names it

WAIT = "Max wait (capped)"  # the call returns as soon as the awaited thing comes

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
IDEMPOTENT = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
ADDITIVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)


def app_of(ctx: Ctx) -> App:
    app: App = ctx.request_context.lifespan_context
    return app


async def heartbeat(
    ctx: Ctx,
    status: Annotated[str, Field(min_length=1, max_length=MAX_STATUS)] = "idle",
    capabilities: Annotated[
        list[Capability] | None,
        Field(
            max_length=MAX_CAPABILITIES,
            description="Task kinds you do",
        ),
    ] = None,
    note: Annotated[str, Field(max_length=MAX_NOTE)] = "",
    ttl_seconds: Annotated[int, Field(ge=1, le=86_400, description="Gone after this long silent")] = 60,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, HeartbeatResult]:
    """Say you are alive; extends all your leases and locks. Call it within your shortest lease or
    ttl."""
    app = app_of(ctx)
    r = await app.bus.presence.heartbeat(
        app.agent(agent), status=status, capabilities=capabilities, note=note, ttl_seconds=ttl_seconds
    )
    verb = "joined" if r.joined else "is alive"
    return ok(
        r,
        f"{r.agent.agent} {verb} ({status}); {len(r.leases_extended)} lease(s) and "
        f"{len(r.locks_extended)} lock(s) extended; "
        f"{r.live_agents} agent(s) alive; {r.unread_messages} unread message(s).",
    )


async def list_agents(
    ctx: Ctx,
    capability: Annotated[Capability | None, Field(description="Only agents with it")] = None,
    include_gone: Annotated[bool, Field(description="Also agents whose heartbeat lapsed")] = False,
) -> Annotated[CallToolResult, ListAgentsResult]:
    """Who is on the bus: each agent's status, capabilities, last seen, and tasks and locks held."""
    r = await app_of(ctx).bus.presence.list_agents(capability=capability, include_gone=include_gone)
    r.agents, left_out = keep_fitting(r.agents, "agent(s)", "pass capability to list fewer")
    r.notices += left_out
    alive = sum(a.alive for a in r.agents)
    line = f"{alive} agent(s) alive" + (f", {len(r.agents) - alive} gone." if include_gone else ".")
    return ok(r, line, agent="agents")


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
    agent: AgentArg = None,
) -> Annotated[CallToolResult, CreateTaskResult]:
    """Queue one task for a worker; for several related tasks, use create_workflow."""
    app = app_of(ctx)
    r = await app.bus.tasks.create(
        app.agent(agent),
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
    )
    return ok(
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
    app = app_of(ctx)
    r = await app.bus.workflows.create(
        app.agent(agent), title=title, tasks=tasks, idempotency_key=idempotency_key
    )
    line = f"Workflow {r.workflow_id}: {len(r.task_ids)} task(s), ready now: {', '.join(r.ready)}."
    return ok(r, line, task_ids="task_ids")


async def claim_task(
    ctx: Ctx,
    capabilities: Annotated[
        list[Capability] | None,
        Field(max_length=MAX_CAPABILITIES, description="Default: yours plus any"),
    ] = None,
    wait_seconds: Annotated[float, Field(ge=0, description=WAIT)] = 0,
    lease_seconds: Annotated[int | None, Field(ge=1, le=86_400, description="Default 300")] = None,
    task_id: TaskId | None = None,  # a specific ready task
    agent: AgentArg = None,
) -> Annotated[CallToolResult, ClaimResult]:
    """Take the next ready task (by priority, then age) and a lease on it; end with complete_task or
    fail_task. task is null if none is ready."""
    app = app_of(ctx)
    r = await app.bus.tasks.claim(
        app.agent(agent),
        capabilities=capabilities,
        lease_seconds=lease_seconds,
        task_id=task_id,
        wait_seconds=wait_seconds,
        on_progress=ctx.report_progress,
    )
    if r.task is None:
        return ok(r, f"No task claimed: {r.reason}.", ready_elsewhere="ready_elsewhere")
    return ok(
        r,
        f"Claimed {r.task.id} '{r.task.title}' (attempt {r.task.attempt}/{r.task.max_attempts}); "
        f"lease until {r.lease.expires_at if r.lease else '?'}.",
        lease="lease",  # first: it must reach the model even when the task is too large for the text
        task="task",
    )


async def complete_task(
    ctx: Ctx,
    task_id: TaskId,
    lease_token: LeaseToken,
    result: Annotated[Any, Field(description="JSON up to 64 KiB")] = None,  # dependents get it as inputs
    summary: Annotated[str, Field(max_length=MAX_SUMMARY)] = "",
    agent: AgentArg = None,
) -> Annotated[CallToolResult, CompleteResult]:
    """Mark your claimed task done with its result. Safe to repeat."""
    app = app_of(ctx)
    r = await app.bus.tasks.complete(app.agent(agent), task_id, lease_token, result=result, summary=summary)
    line = f"Task {task_id} is done" + (" (already recorded)" if r.already_completed else "")
    if r.unblocked:
        line += f"; now ready: {', '.join(r.unblocked)}"
    if r.progress is not None:
        line += f"; workflow {r.workflow_id} {r.workflow_status}, {r.progress.done}/{r.progress.total} done"
    return ok(r, line + ".")


async def fail_task(
    ctx: Ctx,
    task_id: TaskId,
    lease_token: LeaseToken,
    error: Annotated[str, Field(min_length=1, max_length=MAX_ERROR)],
    retry: Annotated[bool, Field(description="false: dead now")] = True,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, FailResult]:
    """Your claimed task failed: retried with backoff until max_attempts, then dead. Safe to repeat."""
    app = app_of(ctx)
    r = await app.bus.tasks.fail(app.agent(agent), task_id, lease_token, error=error, retry=retry)
    if r.state == "dead":
        line = f"Task {task_id} is dead after {r.attempts} attempt(s)"
        if r.cancelled:
            line += f"; cancelled dependents: {', '.join(r.cancelled)}"
    else:
        line = (
            f"Task {task_id} will be retried (attempt {r.attempts}/{r.max_attempts} failed) at {r.retry_at}"
        )
    return ok(r, line + ".")


async def get_workflow(
    ctx: Ctx,
    workflow_id: WorkflowId | None = None,
) -> Annotated[CallToolResult, GetWorkflowResult]:
    """A workflow's status, progress and tasks; without workflow_id, recent workflows."""
    r = await app_of(ctx).bus.workflows.get(workflow_id)
    if r.workflow is not None:
        w = r.workflow
        return ok(
            r,
            f"Workflow {w.workflow_id} '{w.title}' is {w.status}: {w.progress.done}/{w.progress.total} done.",
            task="workflow.tasks",
        )
    return ok(r, f"{len(r.workflows or [])} recent workflow(s).", workflow="workflows")


async def send_message(
    ctx: Ctx,
    to: Annotated[
        Recipient,
        Field(description="Agent id, role:<capability> or * (all)"),
    ],
    body: Annotated[str, Field(min_length=1, max_length=MAX_BODY)],
    subject: Annotated[str, Field(max_length=MAX_SUBJECT)] = "",
    thread_id: ThreadId | None = None,  # default: reply_to's thread, else a new one
    reply_to: MessageId | None = None,
    data: Any = None,
    idempotency_key: IdempotencyArg = None,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, SendResult]:
    """Send a message to agents' durable inboxes."""
    app = app_of(ctx)
    r = await app.bus.inbox.send(
        app.agent(agent),
        to,
        body,
        subject=subject,
        thread_id=thread_id,
        reply_to=reply_to,
        data=data,
        idempotency_key=idempotency_key,
    )
    line = f"Sent {r.message_id} to {', '.join(r.recipients)} (thread {r.thread_id})"
    return ok(r, line + (" earlier, with this key." if r.duplicate else "."))


async def read_inbox(
    ctx: Ctx,
    limit: Annotated[int, Field(ge=1, le=MAX_READ)] = 20,
    wait_seconds: Annotated[float, Field(ge=0, description=WAIT)] = 0,
    peek: Annotated[bool, Field(description="Don't mark them read")] = False,
    thread_id: Annotated[ThreadId | None, Field(description="Only this thread")] = None,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, ReadInboxResult]:
    """Your unread messages, oldest first; each is returned once."""
    app = app_of(ctx)
    r = await app.bus.inbox.read(
        app.agent(agent),
        limit=limit,
        peek=peek,
        thread_id=thread_id,
        wait_seconds=wait_seconds,
        on_progress=ctx.report_progress,
    )
    lines = [f"{len(r.messages)} message(s), {r.unread_remaining} more unread."]
    lines += [f"{m.id} from {m.sender}: {m.subject or m.body[:80]}" for m in r.messages]
    return ok(r, "\n".join(lines), message="messages")


ResourceArg = Annotated[Resource, Field(description="Usually a path; 'dir/' covers all below it")]


async def acquire_lock(
    ctx: Ctx,
    resource: ResourceArg,
    ttl_seconds: Annotated[int, Field(ge=1, le=86_400)] = 60,  # heartbeat extends it
    wait_seconds: Annotated[float, Field(ge=0, description=WAIT)] = 0,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, LockResult]:
    """Lock what you will change; refused while an overlapping lock is held (naming its holder)."""
    app = app_of(ctx)
    r = await app.bus.locks.acquire(
        app.agent(agent),
        resource,
        ttl_seconds=ttl_seconds,
        wait_seconds=wait_seconds,
        on_progress=ctx.report_progress,
    )
    if r.acquired:
        verb = "Extended" if r.extended else "Locked"
        line = f"{verb} {r.resource} (fencing token {r.fencing_token}) until {r.expires_at}."
        return ok(r, line, lock_token="lock_token")
    if r.conflicting_resource is None:
        return ok(r, f"Not locked: {r.holder} is waiting for {r.resource} first.")
    return ok(r, f"Not locked: {r.holder} holds {r.conflicting_resource} until {r.expires_at}.")


async def release_lock(
    ctx: Ctx,
    resource: Resource,
    lock_token: Annotated[str, Field(min_length=1, max_length=64)],
    agent: AgentArg = None,
) -> Annotated[CallToolResult, ReleaseResult]:
    """Release a lock you hold."""
    app = app_of(ctx)
    r = await app.bus.locks.release(app.agent(agent), resource, lock_token)
    return ok(r, f"Released {r.resource}." if r.released else f"Nothing released: {r.reason}.")


async def publish_event(
    ctx: Ctx,
    topic: Annotated[Topic, Field(description="e.g. build.failed")],
    data: Any = None,
    idempotency_key: IdempotencyArg = None,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, PublishResult]:
    """Announce an event to every reader of the event log."""
    app = app_of(ctx)
    r = await app.bus.events.publish(app.agent(agent), topic, data, idempotency_key=idempotency_key)
    return ok(
        r, f"Published {topic} as {r.event_id}" + (" (earlier, with this key)." if r.duplicate else ".")
    )


async def read_events(
    ctx: Ctx,
    topics: Annotated[
        list[TopicPattern] | None,
        Field(max_length=20, description="e.g. task.*; default all"),
    ] = None,
    after: Annotated[
        Cursor | None, Field(description="Cursor from the last read; '0': start; omit: now")
    ] = None,
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = 50,
    wait_seconds: Annotated[float, Field(ge=0, description=WAIT)] = 0,
) -> Annotated[CallToolResult, ReadEventsResult]:
    """The event log, oldest first; pass the returned cursor as after next time."""

    r = await app_of(ctx).bus.events.read(
        topics=topics, after=after, limit=limit, wait_seconds=wait_seconds, on_progress=ctx.report_progress
    )
    return ok(r, f"{len(r.events)} event(s); next cursor {r.cursor}.", event="events")


TOOLS: dict[str, tuple[Callable[..., Any], ToolAnnotations]] = {
    "heartbeat": (heartbeat, IDEMPOTENT),
    "list_agents": (list_agents, READ_ONLY),
    "create_task": (create_task, ADDITIVE),
    "create_workflow": (create_workflow, ADDITIVE),
    "claim_task": (claim_task, ADDITIVE),
    "complete_task": (complete_task, IDEMPOTENT),
    "fail_task": (fail_task, IDEMPOTENT),
    "get_workflow": (get_workflow, READ_ONLY),
    "send_message": (send_message, ADDITIVE),
    "read_inbox": (read_inbox, ADDITIVE),
    "acquire_lock": (acquire_lock, ADDITIVE),
    "release_lock": (release_lock, IDEMPOTENT),
    "publish_event": (publish_event, ADDITIVE),
    "read_events": (read_events, READ_ONLY),
}

PROFILES: dict[str, tuple[str, ...]] = {
    "all": tuple(TOOLS),
    "worker": (
        "heartbeat",
        "claim_task",
        "complete_task",
        "fail_task",
        "get_workflow",
        "send_message",
        "read_inbox",
        "acquire_lock",
        "release_lock",
        "publish_event",
        "read_events",
    ),
    "coordinator": (
        "heartbeat",
        "list_agents",
        "create_task",
        "create_workflow",
        "get_workflow",
        "send_message",
        "read_inbox",
        "publish_event",
        "read_events",
    ),
}


def select_tools(profile: str) -> list[str]:
    """Tool names for a comma list of profile names and tool names, e.g. ``worker,create_task``."""
    names: dict[str, None] = {}
    unknown = []
    for item in (n.strip() for n in profile.split(",")):
        if item in PROFILES:
            names.update(dict.fromkeys(PROFILES[item]))
        elif item in TOOLS:
            names[item] = None
        elif item:
            unknown.append(item)
    if unknown or not names:
        raise ValueError(
            f"{profile!r}: unknown tool(s) {', '.join(unknown) or '(none given)'}; use profiles "
            f"({', '.join(PROFILES)}) and tools ({', '.join(TOOLS)}), comma-separated"
        )
    return list(names)
