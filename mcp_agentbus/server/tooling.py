"""What every MCP tool shares: the lifespan object (`App`), the argument types, the annotations. (What
one call carries is its `calls.Call`.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import Context
from mcp.types import ToolAnnotations
from pydantic import Field

from mcp_agentbus.core.waiting import ProgressCallback
from mcp_agentbus.ids import (
    AgentId,
    IdempotencyKey,
)
from mcp_agentbus.server.json_answers import answered_whole
from mcp_agentbus.server.namespaces import Namespaces, Served
from mcp_agentbus.server.schemas import WAIT_CAP
from mcp_agentbus.server.tokens import Grant
from mcp_agentbus.settings import Settings

Tool = TypeVar("Tool", bound=Callable[..., Any])


@dataclass
class App:
    """What the server's lifespan holds, as long as the server runs: the served namespaces and the
    settings. What belongs to one call (its grant, namespace, agent) is its `calls.Call`."""

    namespaces: Namespaces
    settings: Settings

    def namespace_for(self, grant: Grant | None) -> str:
        """The namespace a request acts on: its token's, else the server's."""
        return self.settings.namespace if grant is None else grant.namespace

    def served_for(self, grant: Grant | None) -> Served:
        return self.namespaces.get(self.namespace_for(grant))


Ctx = Context[App, Any]

# Every tool takes `agent`; the server's instructions say what it is, once, not each listing.
AgentArg = AgentId | None
IdempotencyArg = IdempotencyKey | None  # a well-known idea: its name says it
LeaseToken = Annotated[str, Field(min_length=1, max_length=64)]  # claim_task's description names it

WAIT = f"Max wait, cap {WAIT_CAP}"  # the call returns as soon as the awaited thing comes
# Which fence guards what, said alike wherever a fence is handed out or used (descriptions, prompts, README).
FENCES = "A lease's fence guards its task's side effects; a lock's fencing_token, writes to its resource."


def progress(ctx: Ctx) -> ProgressCallback | None:
    """Where a waiting tool reports progress: to the client, unless the call's answer is one JSON body
    (json_answers.py), which carries nothing but the result."""
    return None if answered_whole() else ctx.report_progress


def described(description: str) -> Callable[[Tool], Tool]:
    """Give a tool its description (what a docstring would be) when it is built from parts, e.g. FENCES."""

    def describe(tool: Tool) -> Tool:
        tool.__doc__ = description
        return tool

    return describe


READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
IDEMPOTENT = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
ADDITIVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
