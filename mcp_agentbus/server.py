"""The MCP server: `build_server()` wires the tools to an `AgentBus` owned by the server's lifespan,
and turns every failure into a clear tool error instead of the SDK's generic text."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult, TextContent
from pydantic import ValidationError

from mcp_agentbus import __version__, notices
from mcp_agentbus.bus import AgentBus
from mcp_agentbus.errors import AgentBusError, InternalError, InvalidArgument, NotFound, explain_validation
from mcp_agentbus.settings import Settings
from mcp_agentbus.tasks import AGENT_RE
from mcp_agentbus.tools import TOOLS, App, select_tools

logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
agentbus coordinates agents through a shared Redis. Workers: heartbeat, then loop claim_task
(with wait_seconds) -> do the work -> complete_task or fail_task with the lease_token; heartbeat more
often than your lease lasts. Coordinators: create_workflow to split a goal into dependent tasks,
get_workflow to follow it. Pass your own `agent` id when several agents share one server."""


class AgentBusServer(MCPServer[App]):
    """`MCPServer` whose tool failures are always ``{"error": {"code", "message", "hint"}}``."""

    def __init__(self, settings: Settings) -> None:
        @asynccontextmanager
        async def lifespan(_: MCPServer[App]) -> AsyncIterator[App]:
            async with AgentBus.open(settings) as bus:
                yield App(bus=bus, settings=settings)

        super().__init__(
            "agentbus",
            version=__version__,
            instructions=INSTRUCTIONS,
            lifespan=lifespan,
            log_level=settings.log_level,
        )
        self._settings = settings
        self._arguments: dict[str, frozenset[str]] = {}
        for name in select_tools(settings.tools):
            fn, annotations = TOOLS[name]
            self.add_tool(fn, annotations=annotations, structured_output=True)
            params = inspect.signature(fn).parameters
            self._arguments[name] = frozenset(p for p in params if p != "ctx")

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[App, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        allowed = self._arguments.get(name)
        if allowed is None:
            return error_result(
                NotFound(
                    f"there is no tool named {name!r}", hint=f"Available tools: {', '.join(self._arguments)}."
                )
            )
        unknown = sorted(set(arguments) - allowed)
        if unknown:
            return error_result(
                InvalidArgument(
                    f"{name} has no argument(s) {', '.join(unknown)}",
                    hint=f"{name} accepts: {', '.join(sorted(allowed))}.",
                )
            )
        try:
            with self._watching(name, arguments):
                return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            return error_result(_explain(name, exc))

    def _watching(self, tool: str, arguments: dict[str, Any]) -> AbstractContextManager[Any]:
        """Collect the acting agent's notices along with a tool call that acts."""
        agent = arguments.get("agent") or self._settings.agent
        if "agent" not in self._arguments[tool] or not isinstance(agent, str) or not AGENT_RE.match(agent):
            return nullcontext()
        return notices.watching(agent, unread=tool != "read_inbox")


def _explain(tool: str, exc: ToolError) -> AgentBusError:
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
    text = f"Error [{error.code}]: {error.message}\nHint: {error.hint}"
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content={"error": error.to_dict()},
        is_error=True,
    )


def build_server(settings: Settings | None = None) -> AgentBusServer:
    """A fresh server; its lifespan opens the bus (Redis client, wake-ups, reaper) and closes it."""
    return AgentBusServer(settings or Settings())
