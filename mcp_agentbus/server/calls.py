"""One tool call as the server serves it: worked out once when the call comes in (``app.py``) and read
by the tool it runs (`current`). It holds the token's grant, the bus of the namespace the call acts on
— a view that acts for the call's `Caller` (``context.py``), so every script below carries it
explicitly — and who the call may act as. The lifespan object (`App`) holds only what lives as long as
the server.

The SDK hands a tool function only its MCP context, so the call reaches the tool through one context
variable, set around the tool by the server; everything below the tool gets it as an argument.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass

from mcp.types import CallToolResult

from mcp_agentbus.context import Watch
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import Result
from mcp_agentbus.errors import UnknownAgent
from mcp_agentbus.server import replies
from mcp_agentbus.server.auth import acting_agent
from mcp_agentbus.server.tokens import Grant


@dataclass(frozen=True)
class Call:
    grant: Grant | None  # the token's, None without one (stdio, or HTTP without a tokens file)
    bus: AgentBus  # the namespace's bus, acting for the call's caller
    default_agent: str | None  # the server's AGENTBUS_AGENT

    @property
    def watch(self) -> Watch | None:
        """What the call gathers for the agent it is made for: its notices (None: made for no one)."""
        return self.bus.store.caller.watch

    @property
    def caller(self) -> str | None:
        """The agent the call is made for, if any: read-only tools end their waits on news for it."""
        return None if self.watch is None else self.watch.agent

    def agent(self, agent: str | None) -> str:
        """The acting agent: the argument, else the token's or the server's identity; checked against
        the token."""
        return acting_agent(agent, self.default_agent, self.grant)

    def reader(self, agent: str | None) -> None:
        """Check the agent a read-only call names, before the read: it is named only for its notices
        (`AgentBus.gather_notices` after the read), so naming none is no error (no notices then), but a
        token may not look at another agent's."""
        with suppress(UnknownAgent):
            self.agent(agent)

    def ok(self, result: Result, line: str, **details: str) -> CallToolResult:
        """The tool's reply (`replies.ok`), with the notices the call gathered."""
        return replies.ok(result, line, self.watch, **details)


_current: ContextVar[Call] = ContextVar("agentbus_call")


@contextmanager
def serving(call: Call) -> Iterator[None]:
    """Run the enclosed tool as `call`."""
    token = _current.set(call)
    try:
        yield
    finally:
        _current.reset(token)


def current() -> Call:
    """The call the running tool serves."""
    return _current.get()
