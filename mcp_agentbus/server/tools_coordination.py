"""The tools around the work: presence (heartbeat, list_agents), locks, and the event log."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.types import CallToolResult
from pydantic import Field

from mcp_agentbus.core.events import MAX_LIMIT
from mcp_agentbus.core.models import (
    HeartbeatResult,
    ListAgentsResult,
    LockResult,
    PublishResult,
    ReadEventsResult,
    ReleaseResult,
)
from mcp_agentbus.core.presence import ProgressReport
from mcp_agentbus.ids import (
    MAX_CAPABILITIES,
    MAX_NOTE,
    MAX_STATUS,
    Capability,
    Cursor,
    Resource,
    Topic,
    TopicPattern,
)
from mcp_agentbus.server.replies import keep_fitting, ok
from mcp_agentbus.server.tooling import (
    WAIT,
    AgentArg,
    Ctx,
    IdempotencyArg,
    app_of,
)


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
    progress: ProgressReport | None = None,  # on a task you hold
    agent: AgentArg = None,
) -> Annotated[CallToolResult, HeartbeatResult]:
    """Say you are alive; extends all your leases and locks. Call it within your shortest lease or
    ttl."""
    app = app_of(ctx)
    r = await app.bus.presence.heartbeat(
        app.agent(agent),
        status=status,
        capabilities=capabilities,
        note=note,
        ttl_seconds=ttl_seconds,
        progress=progress,
    )
    verb = "joined" if r.joined else "is alive"
    line = (
        f"{r.agent.agent} {verb} ({status}); {len(r.leases_extended)} lease(s) and "
        f"{len(r.locks_extended)} lock(s) extended; "
        f"{r.live_agents} agent(s) alive; {r.unread_messages} unread message(s)"
    )
    if progress is not None:
        line += f"; progress of {progress.task_id} recorded ({progress.percent:g}%)"
    if r.agent.assigned:
        line += f"; {r.agent.assigned} task(s) assigned to you are ready (claim_task)"
    return ok(r, line + ".")


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
