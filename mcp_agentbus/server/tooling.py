"""What every MCP tool shares: the lifespan object (`App`), the argument types, the annotations."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import Context
from mcp.types import ToolAnnotations
from pydantic import Field

from mcp_agentbus import context
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.errors import UnknownAgent
from mcp_agentbus.ids import (
    AgentId,
    IdempotencyKey,
)
from mcp_agentbus.server.auth import acting_agent, current_grant
from mcp_agentbus.server.namespaces import Namespaces, Served
from mcp_agentbus.server.schemas import WAIT_CAP
from mcp_agentbus.settings import Settings

Tool = TypeVar("Tool", bound=Callable[..., Any])


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

    def reader(self, agent: str | None) -> None:
        """Check the agent a read-only call names, before the read: it is named only for its notices
        (`AgentBus.gather_notices` after the read), so naming none is no error (no notices then), but a
        token may not look at another agent's."""
        with suppress(UnknownAgent):
            self.agent(agent)


Ctx = Context[App, Any]

# Every tool takes `agent`; the server's instructions say what it is, once, not each listing.
AgentArg = AgentId | None
IdempotencyArg = IdempotencyKey | None  # a well-known idea: its name says it
LeaseToken = Annotated[str, Field(min_length=1, max_length=64)]  # claim_task's description names it

WAIT = f"Max wait, cap {WAIT_CAP}"  # the call returns as soon as the awaited thing comes
# Which fence guards what, said alike wherever a fence is handed out or used (descriptions, prompts, README).
FENCES = "A lease's fence guards its task's side effects; a lock's fencing_token, writes to its resource."


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


def caller() -> str | None:
    """The agent this call acts for, as the server worked it out once for the call (app.py), if any:
    read-only tools use it for its notices and to end their waits on news for it."""
    watch = context.watched()
    return None if watch is None else watch.agent


def app_of(ctx: Ctx) -> App:
    app: App = ctx.request_context.lifespan_context
    return app
