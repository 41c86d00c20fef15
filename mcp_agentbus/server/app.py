"""The MCP server: `build_server()` wires the tools to an `AgentBus` owned by the server's lifespan,
and turns every failure into a clear tool error instead of the SDK's generic text."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.auth.settings import AuthSettings
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts import Prompt
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INTERNAL_ERROR,
    CallToolResult,
    InputRequiredResult,
)
from mcp.types import Resource as MCPResource
from mcp.types import ResourceTemplate as MCPResourceTemplate
from mcp.types import Tool as MCPTool
from pydantic import AnyUrl

from mcp_agentbus import __version__
from mcp_agentbus.context import Caller, Watch, of_token
from mcp_agentbus.errors import (
    AgentBusError,
    InvalidArgument,
    NotFound,
    clip,
)
from mcp_agentbus.ids import AGENT_RE
from mcp_agentbus.server import calls, prompts, resources
from mcp_agentbus.server.arguments import Arguments
from mcp_agentbus.server.auth import (
    Verifier,
    Waits,
    acting_agent,
    authorize_resource,
    current_grant,
    kind_of,
    may_read,
    revoked,
    tool_refused,
    watch_tokens,
)
from mcp_agentbus.server.failures import error_result, explain, resource_error
from mcp_agentbus.server.namespaces import Namespaces
from mcp_agentbus.server.profiles import select_tools
from mcp_agentbus.server.push import Listeners
from mcp_agentbus.server.resources import VIEWS
from mcp_agentbus.server.schemas import compact_annotations, compact_input, compact_output
from mcp_agentbus.server.stdio import stdio_streams
from mcp_agentbus.server.subscribing import Subscribing
from mcp_agentbus.server.tokens import Grant, TokensFile
from mcp_agentbus.server.tooling import App
from mcp_agentbus.server.tools import TOOLS
from mcp_agentbus.server.tracing import trace_when_traced
from mcp_agentbus.settings import Settings

logger = logging.getLogger(__name__)


class AgentBusServer(MCPServer[App]):
    """`MCPServer` whose tool failures are always ``{"error": {"code", "message", "hint"}}``."""

    def __init__(
        self, settings: Settings, *, legacy_subscriptions: bool = True, tokens: TokensFile | None = None
    ) -> None:
        try:
            names = select_tools(settings.tools)
        except ValueError as exc:
            raise ValueError(f"AGENTBUS_TOOLS={exc}") from None
        listeners = Listeners(settings.namespace, tokens)  # serves subscriptions/listen (2026-07-28)
        tools = [_tool(name) for name in names]
        self.running: App | None = None  # what the lifespan holds, while it runs

        @asynccontextmanager
        async def lifespan(_: MCPServer[App]) -> AsyncIterator[App]:
            async with Namespaces.open(settings, listeners) as namespaces, anyio.create_task_group() as tg:
                if tokens is not None:
                    tg.start_soon(watch_tokens, tokens)
                self.running = running = App(namespaces=namespaces, settings=settings)
                try:
                    yield running
                finally:
                    self.running = None  # no MCP request can be served from here on (see /healthz)
                    tg.cancel_scope.cancel()

        super().__init__(
            "agentbus",
            version=__version__,
            instructions=prompts.instructions(settings.max_wait_seconds),
            lifespan=lifespan,
            log_level=settings.log_level,
            subscriptions=listeners,
            # Plain bearer tokens: with no resource_server_url the SDK advertises no OAuth metadata, so
            # the issuer is never shown to clients (but the SDK requires one).
            token_verifier=None if tokens is None else Verifier(tokens),
            auth=None
            if tokens is None
            else AuthSettings(issuer_url="http://127.0.0.1", resource_server_url=None),
            tools=tools,
        )
        self._tokens = tokens
        Subscribing(settings, listeners, tokens, self._authorized).register(
            self._lowlevel_server, legacy=legacy_subscriptions
        )
        trace_when_traced(self._lowlevel_server)
        self.add_prompt(Prompt.from_function(prompts.coordinator, name="coordinator"))
        self.add_prompt(Prompt.from_function(prompts.worker, name="worker"))
        self._settings = settings
        self._waits = Waits(settings.max_waits_per_token)
        self._arguments = Arguments(tools)
        self._listed: list[MCPTool] | None = None  # the compact tools/list, built once
        self._roles: dict[str, list[str]] = {}  # the tools each token role may call

    async def run_stdio_async(self) -> None:
        """Serve on stdin and stdout, read and written by the event loop when they are pipes (stdio.py)."""
        async with stdio_streams() as (read_stream, write_stream):
            server = self._lowlevel_server
            await server.run(read_stream, write_stream, server.create_initialization_options())

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[App, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        if name not in self._arguments.names:
            return error_result(
                NotFound(
                    f"there is no tool named {clip(name)!r}",
                    hint=f"Available tools: {', '.join(self._arguments.names)}.",
                )
            )
        grant = current_grant()
        if grant is not None and name not in self._role_tools(grant.role):
            return error_result(tool_refused(grant.role, name, self._role_tools(grant.role)))
        refused = self._arguments.refusal(name, arguments)
        if refused is not None:
            return error_result(refused)
        waiting = self._waits.take(grant, arguments)
        if isinstance(waiting, InvalidArgument):
            return error_result(waiting)
        try:
            with calls.serving(self._call(name, arguments, grant, context)):
                return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            return error_result(explain(name, exc))
        finally:
            if waiting is not None:
                self._waits.give_back(waiting)

    def _call(
        self, tool: str, arguments: dict[str, Any], grant: Grant | None, context: Context[App, Any] | None
    ) -> calls.Call:
        """What a tool call carries, worked out once as it comes in: the agent it is made for (its
        notices, its presence, news that ends its waits), the owner of what it creates (a token's calls
        use the token's share of the namespace's bounds; without one, the acting agent's), and whether
        its token still holds while it waits."""
        app = self.running if context is None else context.request_context.lifespan_context
        if app is None:
            raise ToolError("the server is not running")
        agent = arguments.get("agent")
        try:
            acting: str | None = acting_agent(
                agent if isinstance(agent, str) else None, self._settings.agent, grant
            )
        except AgentBusError:
            acting = None  # the tool itself reports it
        watch = (
            Watch(acting, unread=tool != "read_inbox")
            if acting is not None and AGENT_RE.fullmatch(acting)
            else None
        )
        caller = Caller(
            watch,
            "" if grant is None else of_token(grant.id),
            None if grant is None else self._still_granted(grant),
        )
        return calls.Call(grant, app.served_for(grant).bus.acting(caller), self._settings.agent)

    def _still_granted(self, grant: Grant) -> Callable[[], None] | None:
        """What a waiting call asks before it looks again: is its token's grant still in the file?"""
        tokens = self._tokens
        if tokens is None:
            return None

        def check() -> None:
            if not tokens.holds(grant):
                raise revoked()

        return check

    def _role_tools(self, role: str) -> list[str]:
        """The tools of this server a token's role allows (none for a role that names no known tools);
        worked out once per role, since every authenticated call asks."""
        tools = self._roles.get(role)
        if tools is None:
            try:
                allowed = select_tools(role)
            except ValueError:
                allowed = []
            tools = self._roles[role] = [name for name in self._arguments.names if name in allowed]
        return tools

    async def list_tools(self) -> list[MCPTool]:
        if self._listed is None:
            self._listed = [
                tool.model_copy(
                    update={
                        "description": " ".join((tool.description or "").split()),  # a docstring's wraps
                        "input_schema": compact_input(tool.input_schema, self._settings.max_wait_seconds),
                        "output_schema": tool.output_schema and compact_output(tool.output_schema),
                        "annotations": compact_annotations(tool.annotations),
                    }
                )
                for tool in await super().list_tools()
            ]
        grant = current_grant()
        if grant is None:
            return self._listed
        allowed = self._role_tools(grant.role)
        return [tool for tool in self._listed if tool.name in allowed]

    def _authorized(self, uri: str) -> None:
        """`uri` may be read by the caller, else a JSON-RPC error saying why not."""
        grant = current_grant()
        try:
            authorize_resource(uri, () if grant is None else self._role_tools(grant.role))
        except AgentBusError as exc:
            raise resource_error(uri, exc) from exc

    def _readable(self, view: str) -> bool:
        grant = current_grant()
        return grant is None or may_read(kind_of(view), self._role_tools(grant.role))

    async def list_resources(self) -> list[MCPResource]:
        return [
            MCPResource(uri=v.uri, name=v.name, description=v.description, mime_type="application/json")
            for v in VIEWS
            if "{" not in v.uri and self._readable(v.uri)
        ]

    async def list_resource_templates(self) -> list[MCPResourceTemplate]:
        return [
            MCPResourceTemplate(
                uri_template=v.uri, name=v.name, description=v.description, mime_type="application/json"
            )
            for v in VIEWS
            if "{" in v.uri and self._readable(v.uri)
        ]

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[App, Any] | None = None
    ) -> Iterable[ReadResourceContents]:
        if context is None:
            raise MCPError(code=INTERNAL_ERROR, message="resources are read through a client session")
        app: App = context.request_context.lifespan_context
        self._authorized(str(uri))
        try:
            text = await resources.read(app.served_for(current_grant()).bus, str(uri))
        except AgentBusError as exc:
            raise resource_error(str(uri), exc) from exc
        return [ReadResourceContents(content=text, mime_type="application/json")]


def _tool(name: str) -> Tool:
    """Tool `name` as the SDK serves it but for one check: a result is dumped from its result model
    (`replies.ok`), so validating it against that model again, as the SDK does on every call, is left
    out (4 % of an in-memory heartbeat's instructions). Its schema still comes from the model; the
    tests check every result against it (`tests/helpers/mcp_session.py`)."""
    fn, annotations = TOOLS[name]
    tool = Tool.from_function(fn, annotations=annotations, structured_output=True)
    tool.fn_metadata.output_model = None  # read on each call: with a schema and no model, none is checked
    return tool


def build_server(
    settings: Settings | None = None, *, legacy_subscriptions: bool = True, tokens: TokensFile | None = None
) -> AgentBusServer:
    """A fresh server; its lifespan opens the bus (Redis client, wake-ups, reaper) and closes it.
    `legacy_subscriptions=False` when legacy clients have no session to receive updates on; `tokens`
    (HTTP only) requires a bearer token from that file on every request."""
    return AgentBusServer(settings or Settings(), legacy_subscriptions=legacy_subscriptions, tokens=tokens)
