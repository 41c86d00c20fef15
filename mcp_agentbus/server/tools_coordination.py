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
from mcp_agentbus.server import calls
from mcp_agentbus.server.replies import keep_fitting
from mcp_agentbus.server.tooling import FENCES, WAIT, AgentArg, Ctx, IdempotencyArg, described, progress


async def heartbeat(
    ctx: Ctx,
    status: Annotated[
        str, Field(min_length=1, max_length=MAX_STATUS, description="e.g. idle, busy; offline: leave")
    ] = "idle",
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
    """Say you are alive, within your shortest lease or ttl; extends your leases and locks."""
    call = calls.current()
    r = await call.bus.presence.heartbeat(
        call.agent(agent),
        status=status,
        capabilities=capabilities,
        note=note,
        ttl_seconds=ttl_seconds,
        progress=progress,
    )
    if not r.agent.alive:  # status offline
        return call.ok(r, f"{r.agent.agent} left the bus; {r.live_agents} agent(s) alive.")
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
    return call.ok(r, line + ".")


async def list_agents(
    ctx: Ctx,
    capability: Annotated[Capability | None, Field(description="Only agents with it")] = None,
    include_gone: Annotated[bool, Field(description="Also agents whose heartbeat lapsed")] = False,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, ListAgentsResult]:
    """Who is on the bus: each agent's status, capabilities, last seen, and tasks and locks held."""
    call = calls.current()
    call.reader(agent)
    r = await call.bus.presence.list_agents(capability=capability, include_gone=include_gone)
    await call.bus.gather_notices()
    r.agents, left_out = keep_fitting(r.agents, "agent(s)", "pass capability to list fewer")
    r.notices += left_out
    alive = sum(a.alive for a in r.agents)
    line = f"{alive} agent(s) alive" + (f", {len(r.agents) - alive} gone." if include_gone else ".")
    return call.ok(r, line, agent="agents")


ResourceArg = Annotated[Resource, Field(description="A path; 'dir/' covers all below it")]


@described(f"Lock what you will change; refused while an overlapping lock is held. {FENCES}")
async def acquire_lock(
    ctx: Ctx,
    resource: ResourceArg,
    ttl_seconds: Annotated[
        int, Field(ge=1, le=86_400, description="Expires unless heartbeat extends it")
    ] = 60,
    wait_seconds: Annotated[float, Field(ge=0, description=WAIT)] = 0,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, LockResult]:
    call = calls.current()
    r = await call.bus.locks.acquire(
        call.agent(agent),
        resource,
        ttl_seconds=ttl_seconds,
        wait_seconds=wait_seconds,
        on_progress=progress(ctx),
    )
    if r.acquired:
        verb = "Extended" if r.extended else "Locked"
        line = f"{verb} {r.resource} (fencing token {r.fencing_token}) until {r.expires_at}."
        return call.ok(r, line, lock_token="lock_token")
    if r.conflicting_resource is None:
        return call.ok(r, f"Not locked: {r.holder} is waiting for {r.resource} first.")
    return call.ok(r, f"Not locked: {r.holder} holds {r.conflicting_resource} until {r.expires_at}.")


async def release_lock(
    ctx: Ctx,
    resource: Resource,
    lock_token: Annotated[str, Field(min_length=1, max_length=64)],
    agent: AgentArg = None,
) -> Annotated[CallToolResult, ReleaseResult]:
    """Release a lock you hold."""
    call = calls.current()
    r = await call.bus.locks.release(call.agent(agent), resource, lock_token)
    return call.ok(r, f"Released {r.resource}." if r.released else f"Nothing released: {r.reason}.")


async def publish_event(
    ctx: Ctx,
    topic: Annotated[Topic, Field(description="e.g. build.failed")],
    data: Any = None,
    idempotency_key: IdempotencyArg = None,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, PublishResult]:
    """Add an event to the log."""
    call = calls.current()
    r = await call.bus.events.publish(call.agent(agent), topic, data, idempotency_key=idempotency_key)
    return call.ok(
        r, f"Published {topic} as {r.event_id}" + (" (earlier, with this key)." if r.duplicate else ".")
    )


async def read_events(
    ctx: Ctx,
    topics: Annotated[
        list[TopicPattern] | None,
        Field(max_length=20, description="e.g. task.*; omit: all"),
    ] = None,
    after: Annotated[Cursor | None, Field(description="Last cursor; '0': start; omit: now")] = None,
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="Max events")] = 50,
    wait_seconds: Annotated[float, Field(ge=0, description=WAIT)] = 0,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, ReadEventsResult]:
    """The event log, oldest first; pass the cursor back as after."""
    call = calls.current()
    call.reader(agent)
    r = await call.bus.events.read(
        topics=topics,
        after=after,
        limit=limit,
        wait_seconds=wait_seconds,
        on_progress=progress(ctx),
        agent=call.caller,  # news for it ends the wait
    )
    await call.bus.gather_notices()
    return call.ok(r, f"{len(r.events)} event(s); next cursor {r.cursor}.", event="events")
