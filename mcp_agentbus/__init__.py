"""mcp-agentbus: an MCP server that turns one Redis into a coordination bus for LLM agents."""

__version__ = "0.1.0"

from mcp_agentbus.bus import AgentBus
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
from mcp_agentbus.server import build_server
from mcp_agentbus.settings import Settings

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
