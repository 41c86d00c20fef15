"""Who an HTTP request acts for: the grant of its bearer token (``tokens.py``), checked by the SDK's
auth middleware (401 without a valid token) and consulted by the server for namespace, agent, tools
and resources (each resource follows the role of the tool it mirrors; an ``operator`` token, a person's
for the dashboard, gets neither, and is told why). Long-lived things end when
their grant goes: listen streams here (`Streams`), subscriptions in ``push.py``, waits through
``waiting.still_allowed``, legacy sessions in ``http.py``."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_REQUEST

from mcp_agentbus.errors import Forbidden, InvalidArgument, UnknownAgent
from mcp_agentbus.outages import Outage
from mcp_agentbus.server import resources
from mcp_agentbus.server.posted import asked_wait
from mcp_agentbus.server.profiles import OPERATOR
from mcp_agentbus.server.resources import PREFIX
from mcp_agentbus.server.tokens import Grant, TokensFile

logger = logging.getLogger(__name__)


class Verifier:
    """The SDK's `TokenVerifier`: a token is valid while its hash is in the tokens file."""

    def __init__(self, tokens: TokensFile) -> None:
        self._tokens = tokens

    async def verify_token(self, token: str) -> AccessToken | None:
        grant = self._tokens.find(token)
        if grant is None:
            return None
        return AccessToken(token=token, client_id=grant.id, scopes=[], claims={"agentbus": grant})


def current_grant() -> Grant | None:
    """The grant of the token this request came with; None without auth (stdio, or HTTP without tokens)."""
    access = get_access_token()
    if access is None or not access.claims:
        return None
    grant = access.claims.get("agentbus")
    return grant if isinstance(grant, Grant) else None


def acting_agent(agent: str | None, default: str | None, grant: Grant | None) -> str:
    """The agent a call acts as: `agent`, else the token's single agent, else the server's `default`.
    Acting as an agent the caller's token (its `grant`) does not cover is refused."""
    if grant is None:
        acting = agent or default
        if acting is None:
            raise UnknownAgent("this call names no agent and the server has no default agent")
        return acting
    if default is not None and not grant.may_act_as(default):
        default = None
    acting = agent or grant.default_agent or default
    if acting is None:
        raise UnknownAgent(
            "this call names no agent",
            hint=f"Your token acts as agents matching {grant.agent!r}: pass your id as `agent`.",
        )
    if not grant.may_act_as(acting):
        raise Forbidden(
            f"your token may not act as agent {acting!r}",
            hint=f"It may act as agents matching {grant.agent!r}; pass one of those ids as `agent`.",
        )
    return acting


DASHBOARD_TOKEN_HINT = (
    "An agent needs a token of its own (agentbus token create --role worker, coordinator or all); this "
    "one is for a person, in a browser at this server's / (the dashboard)."
)


def tool_refused(role: str, tool: str, allowed: list[str]) -> Forbidden:
    """The refusal of a call of `tool` by a token whose `role` may call only `allowed`."""
    if role == OPERATOR:
        return Forbidden(
            f"your token has the role {OPERATOR!r}: it is a dashboard token, for a person, and may call no "
            f"agent tools ({tool} included)",
            hint=DASHBOARD_TOKEN_HINT,
        )
    return Forbidden(
        f"the role {role!r} of your token may not call {tool}",
        hint=f"It may call: {', '.join(allowed) or 'nothing'}. "
        "Ask the operator for a token with a role that includes this tool.",
    )


# --- resources and long-lived streams under a grant ------------------------------------------------------

TOKENS_POLL_SECONDS = 1.0  # how soon a revocation ends open streams on a server nobody calls
# The tools each resource mirrors: a token's role may read it when it may call one of them.
RESOURCE_TOOLS: dict[str, tuple[str, ...]] = {
    "agents": ("list_agents",),
    "workflows": ("get_workflow",),
    "inbox": ("read_inbox",),
    "locks": ("acquire_lock", "list_agents"),  # both show who holds which lock
    "events": ("read_events",),
    "state": ("get_state",),
}


def kind_of(uri: str) -> str:
    """The view a resource URI (or URI template) names: ``agents``, ``inbox``, ..."""
    return uri.removeprefix(PREFIX).partition("/")[0]


def may_read(kind: str, allowed: Iterable[str]) -> bool:
    """Whether a role that may call the `allowed` tools may read views of `kind`."""
    return not set(RESOURCE_TOOLS[kind]).isdisjoint(allowed)


def authorize_resource(uri: str, allowed: Iterable[str]) -> None:
    """Refuse a URI that names no view, one the caller's role (which may call the `allowed` tools)
    may not read, or an inbox the caller's token may not act as. Without a token, any view."""
    kind, arg = resources.parse(uri)
    grant = current_grant()
    if grant is None:
        return
    allowed = list(allowed)
    if grant.role == OPERATOR:
        raise Forbidden(
            f"your token has the role {OPERATOR!r}: it is a dashboard token, for a person, and reads no "
            f"resources ({uri} included)",
            hint=DASHBOARD_TOKEN_HINT,
        )
    if not may_read(kind, allowed):
        tools = RESOURCE_TOOLS[kind]
        readable = [v.uri for v in resources.VIEWS if may_read(kind_of(v.uri), allowed)]
        raise Forbidden(
            f"the role {grant.role!r} of your token may not read {uri}: it mirrors "
            f"{' or '.join(tools)}, which that role may not call",
            hint=f"It may read: {', '.join(readable) or 'no resources'}. Ask the operator for a "
            f"token with a role that includes {tools[0]}.",
        )
    if kind == "inbox" and not grant.may_act_as(arg):
        raise Forbidden(
            f"your token may not read the inbox of {arg!r}",
            hint=f"It may read the inboxes of agents matching {grant.agent!r}.",
        )


def revoked() -> Forbidden:
    return Forbidden(
        "your token was revoked, or its grant changed, while this was open; nothing more was read or taken",
        hint="Reconnect with a valid token (ask the operator for one) and call again.",
    )


def limit_error(code: str, message: str, hint: str, **data: str) -> MCPError:
    """A request refused because its caller holds too much of something; others are unaffected."""
    error = {"code": code, "message": message, "hint": hint}
    return MCPError(code=INVALID_REQUEST, message=f"{message}. {hint}", data={**data, "error": error})


class Streams:
    """The open ``subscriptions/listen`` streams of each token, at most `limit` each; a stream is
    ended (its scope cancelled) when its token's grant goes."""

    def __init__(self, tokens: TokensFile | None, limit: int) -> None:
        self._tokens = tokens
        self._limit = limit
        self._open: Counter[str] = Counter()

    @contextmanager
    def open(self, grant: Grant | None) -> Iterator[anyio.CancelScope]:
        scope = anyio.CancelScope()
        if grant is None or self._tokens is None:
            with scope:
                yield scope
            return
        if self._open[grant.id] >= self._limit:
            raise limit_error(
                "too_many_streams",
                f"your token already holds {self._limit} subscriptions/listen streams open on this server",
                "Close a stream you no longer read (one stream can follow many URIs), then listen again.",
            )
        self._open[grant.id] += 1
        unwatch = self._tokens.watch(grant, scope.cancel)
        try:
            with scope:
                yield scope
        finally:
            unwatch()
            self._open[grant.id] -= 1
            if self._open[grant.id] <= 0:
                del self._open[grant.id]


async def watch_tokens(tokens: TokensFile) -> None:
    """Look at the tokens file every so often, so a revocation ends streams even on a quiet server."""
    outage = Outage(f"watching the tokens file {tokens.path}", logger)
    while True:
        await anyio.sleep(TOKENS_POLL_SECONDS)
        try:
            tokens.refresh()
            outage.recovered()
        except Exception as exc:  # like every background loop: log once, back off, go on
            await anyio.sleep(outage.failed(exc))


class Waits:
    """The tool calls of each token that wait (a positive `wait_seconds`) in this process, at most
    `limit` at once: a waiting call holds an HTTP connection as long as it waits, so one token could
    otherwise take every connection the server admits and leave none to the others (or to /healthz).
    Plain calls, not a context manager: every tool call asks, and most are not counted."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held: Counter[str] = Counter()

    def take(self, grant: Grant | None, arguments: dict[str, Any]) -> str | InvalidArgument | None:
        """Count the call if it waits: the token id to `give_back` once it ends; the refusal when its token
        has no room; None for a call that is not counted."""
        if grant is None or not (asked_wait(arguments) or 0) > 0:
            return None
        if self._held[grant.id] >= self._limit:
            return InvalidArgument(
                f"your token has {self._limit} calls waiting on this server, the most it may; this one was "
                "not run",
                hint="Wait in fewer calls at once (one waiting claim_task or read_inbox per agent), or call "
                "with wait_seconds 0 and again later.",
            )
        self._held[grant.id] += 1
        return grant.id

    def give_back(self, token_id: str) -> None:
        self._held[token_id] -= 1
        if not self._held[token_id]:
            del self._held[token_id]
