"""The subscription requests: ``subscriptions/listen`` (2026-07-28) and the legacy
``resources/subscribe`` / ``resources/unsubscribe``, each checked against the caller's grant and bounded
per token (streams, subscriptions)."""

from __future__ import annotations

from collections.abc import Callable

from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_REQUEST,
    EmptyResult,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    UnsubscribeRequestParams,
)

from mcp_agentbus.errors import AgentBusError
from mcp_agentbus.server.auth import Streams, current_grant, limit_error, revoked
from mcp_agentbus.server.failures import resource_error
from mcp_agentbus.server.push import Listeners, TooManySubscriptions
from mcp_agentbus.server.resources import require_followable
from mcp_agentbus.server.tokens import TokensFile
from mcp_agentbus.server.tooling import App
from mcp_agentbus.settings import Settings


class Subscribing:
    """The handlers of one server; `authorized(uri)` raises the JSON-RPC error for a URI the caller may
    not read."""

    def __init__(
        self,
        settings: Settings,
        listeners: Listeners,
        tokens: TokensFile | None,
        authorized: Callable[[str], None],
    ) -> None:
        self._settings = settings
        self._listen_handler = ListenHandler(listeners)
        self._streams = Streams(tokens, settings.max_listen_streams_per_token)
        self._authorized = authorized

    def register(self, server: Server[App], *, legacy: bool) -> None:
        server.add_request_handler("subscriptions/listen", SubscriptionsListenRequestParams, self.listen)
        # Legacy clients subscribe with resources/subscribe, which MCPServer leaves to us. Without a
        # session to push on (stateless HTTP) it is not offered at all, rather than accepted and never kept.
        if legacy:
            server.add_request_handler("resources/subscribe", SubscribeRequestParams, self.subscribe)
            server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)

    def _followable(self, uri: str) -> None:
        """The caller may read `uri`, and the bus announces its updates under it; else a JSON-RPC error."""
        self._authorized(uri)
        try:
            require_followable(uri)
        except AgentBusError as exc:
            raise resource_error(uri, exc) from exc

    async def subscribe(self, ctx: ServerRequestContext[App], params: SubscribeRequestParams) -> EmptyResult:
        uri = str(params.uri)
        self._followable(uri)
        app = ctx.lifespan_context
        served = await app.namespaces.subscribed(app.namespace_for(current_grant()))
        limit = self._settings.max_subscriptions_per_token
        if not await served.push.subscribe(uri, _connection(ctx), limit):
            whose = "your token" if current_grant() else "this session"
            raise limit_error(
                "too_many_subscriptions",
                f"{whose} already holds {limit} resource subscriptions on this server",
                "Unsubscribe (resources/unsubscribe) from URIs you no longer follow, or end idle "
                "sessions, then subscribe again.",
                uri=uri,
            )
        return EmptyResult()

    async def listen(
        self, ctx: ServerRequestContext[App], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        """The SDK's listen stream, once its URIs are checked and its namespace hears changes; it
        ends with `forbidden` when its token is revoked or its grant changes."""
        uris = params.notifications.resource_subscriptions or ()
        for uri in uris:
            self._followable(uri)
        with self._streams.open(current_grant()) as ended:
            app = ctx.lifespan_context
            served = await app.namespaces.subscribed(app.namespace_for(current_grant()))
            try:
                following = served.push.following(uris, self._settings.max_subscriptions_per_token)
                async with following:
                    result = await self._listen_handler(ctx, params)
            except TooManySubscriptions as refused:
                raise limit_error(
                    "too_many_subscriptions",
                    f"this stream asks for {refused.asked} resource subscriptions, and "
                    f"{'your token' if current_grant() else 'a stream'} may hold {refused.limit} on this "
                    f"server ({refused.held} held now)",
                    "Listen to fewer URIs (a pattern such as agentbus://events/task.* covers many topics), "
                    "or close streams and unsubscribe legacy subscriptions you no longer read.",
                ) from None
        if ended.cancelled_caught:
            error = revoked()
            raise MCPError(
                code=INVALID_REQUEST,
                message=f"{error.message}. {error.hint}",
                data={"error": error.to_dict()},
            )
        return result


async def unsubscribe(ctx: ServerRequestContext[App], params: UnsubscribeRequestParams) -> EmptyResult:
    ctx.lifespan_context.served_for(current_grant()).push.unsubscribe(str(params.uri), _connection(ctx))
    return EmptyResult()


def _connection(ctx: ServerRequestContext[App]) -> Connection:
    # The SDK (2.3) builds a ServerSession per request and gives low-level handlers no public way to
    # the client's Connection, which outlives the request and is what an update must be sent on.
    connection: Connection = ctx.session._connection
    return connection
