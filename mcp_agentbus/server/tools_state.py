"""The shared-state tools: set_state (write, add to, delete; compare-and-set) and get_state (one key,
or a prefix listing; waits for a newer version)."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from mcp_agentbus.core.state import MAX_LIMIT, GetStateResult, SetStateResult
from mcp_agentbus.ids import Resource
from mcp_agentbus.server import calls
from mcp_agentbus.server.tooling import WAIT, AgentArg, Ctx, IdempotencyArg, progress

# set_state overwrites and deletes, and an increment is not idempotent: MCP's default hints say so.
OVERWRITES = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
)


async def set_state(
    ctx: Ctx,
    key: Resource,
    value: Any = None,  # any JSON; its bound is in the error past it
    increment: float | None = None,
    delete: bool = False,
    if_version: Annotated[int | None, Field(ge=0)] = None,
    ttl_seconds: Annotated[int | None, Field(ge=1, le=86_400, description="Expire after; omit: keep")] = None,
    idempotency_key: IdempotencyArg = None,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, SetStateResult]:
    """Set a path-like key to value, add increment atomically, or delete. if_version: only at that
    version (0: absent), else written=false + current_value."""
    call = calls.current()
    r = await call.bus.state.set(
        call.agent(agent),
        key,
        value=value,
        increment=increment,
        delete=delete,
        if_version=if_version,
        ttl_seconds=ttl_seconds,
        idempotency_key=idempotency_key,
    )
    earlier = " (earlier, with this key)" if r.duplicate else ""
    if r.current_version is not None:
        line = f"Not written: {r.key} is at version {r.current_version}, not {if_version}{earlier}."
        return call.ok(r, line, current_value="current_value")
    if not r.written:
        return call.ok(r, f"Nothing deleted: {r.key} is not set{earlier}.")
    if delete:
        return call.ok(r, f"Deleted {r.key} (version {r.version}){earlier}.")
    return call.ok(r, f"Set {r.key} to version {r.version}{earlier}.", value="value")


async def get_state(
    ctx: Ctx,
    key: Resource | None = None,
    prefix: Annotated[str | None, Field(max_length=512)] = None,  # '' lists every key
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="Max keys")] = 50,
    cursor: Resource | None = None,
    after_version: Annotated[int | None, Field(ge=0)] = None,
    wait_seconds: Annotated[float, Field(ge=0, description=WAIT)] = 0,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, GetStateResult]:
    """A state key, or keys under prefix ('' = all) sorted, cursor pages. after_version and
    wait_seconds: wait for newer."""
    del agent  # worked out with the call (app.py): its notices, and news for it ends the wait
    call = calls.current()
    r = await call.bus.state.get(
        key,
        prefix=prefix,
        cursor=cursor,
        limit=limit,
        after_version=after_version,
        wait_seconds=wait_seconds,
        on_progress=progress(ctx),
        agent=call.caller,
    )
    more = f"; more after cursor {r.cursor}" if r.cursor else ""
    return call.ok(r, f"{len(r.entries)} key(s){more}.", entry="entries")
