"""How a failure reaches the client: a tool error result, or a JSON-RPC error for a resource request,
both carrying the same code, message and hint (never the SDK's generic text, never a traceback)."""

from __future__ import annotations

import logging

from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS, CallToolResult, TextContent
from pydantic import ValidationError

from mcp_agentbus.errors import (
    AgentBusError,
    BackendUnavailable,
    InternalError,
    InvalidArgument,
    explain_validation,
)

logger = logging.getLogger(__name__)


def resource_error(uri: str, error: AgentBusError) -> MCPError:
    """A refused resource request as a JSON-RPC error carrying the same code, message and hint."""
    code = INTERNAL_ERROR if isinstance(error, BackendUnavailable | InternalError) else INVALID_PARAMS
    return MCPError(
        code=code, message=f"{error.message}. {error.hint}", data={"uri": uri, "error": error.to_dict()}
    )


def explain(tool: str, exc: ToolError) -> AgentBusError:
    """What a tool's failure says to the agent: our own error as raised, bad arguments as `invalid_argument`,
    anything else as `internal_error` (logged with its traceback, never shown)."""
    cause = exc.__cause__
    if isinstance(cause, AgentBusError):
        return cause
    if isinstance(cause, ValidationError):
        return InvalidArgument(f"invalid arguments for {tool}: {explain_validation(cause)}")
    if isinstance(exc, UnexpectedToolError):
        logger.error("tool %s failed unexpectedly", tool, exc_info=cause or exc)
        return InternalError(f"{tool} failed unexpectedly ({type(cause or exc).__name__})")
    return InvalidArgument(str(exc))


def error_result(error: AgentBusError) -> CallToolResult:
    """A failed tool call: `{"error": {code, message, hint}}` and the same as text."""
    text = f"Error [{error.code}]: {error.message}\nHint: {error.hint}"
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content={"error": error.to_dict()},
        is_error=True,
    )
