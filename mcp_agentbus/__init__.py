"""mcp-agentbus: an MCP server that turns one Redis into a coordination bus for LLM agents."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcp_agentbus.errors import (
    AgentBusError,
    BackendUnavailable,
    Forbidden,
    InternalError,
    InvalidArgument,
    LeaseLost,
    NotFound,
    PayloadTooLarge,
    UnknownAgent,
    WrongState,
)
from mcp_agentbus.settings import Settings

if TYPE_CHECKING:
    from mcp_agentbus.core.bus import AgentBus
    from mcp_agentbus.server.app import build_server

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The core loads on first use and the MCP stack only when a server is built, so quick commands
    # (`agentbus hook`, `token`, `local`) and users of the core API do not pay for what they skip.
    if name == "AgentBus":
        from mcp_agentbus.core.bus import AgentBus

        return AgentBus
    if name == "build_server":
        from mcp_agentbus.server.app import build_server

        return build_server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AgentBus",
    "AgentBusError",
    "BackendUnavailable",
    "Forbidden",
    "InternalError",
    "InvalidArgument",
    "LeaseLost",
    "NotFound",
    "PayloadTooLarge",
    "Settings",
    "UnknownAgent",
    "WrongState",
    "__version__",
    "build_server",
]
