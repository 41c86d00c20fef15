"""Who an HTTP request acts for: the grant of its bearer token (``tokens.py``), checked by the SDK's
auth middleware (401 without a valid token) and consulted by the server for namespace, agent and tools."""

from __future__ import annotations

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from mcp_agentbus.errors import Forbidden, UnknownAgent
from mcp_agentbus.tokens import Grant, TokensFile


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


def acting_agent(agent: str | None, default: str | None) -> str:
    """The agent a call acts as: `agent`, else the token's single agent, else the server's `default`.
    Acting as an agent the caller's token does not cover is refused."""
    grant = current_grant()
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
