"""The legacy (``initialize``) sessions of an HTTP server process, and their admission: a token past its
own cap gets 429, anyone past the server-wide cap 503 (`Sessions`, answered by `SessionCaps`); a revoked
token's sessions end (`Sessions.end_revoked`)."""

from __future__ import annotations

import asyncio
import json
import logging

from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_agentbus.core.waiting import PROGRESS_EVERY
from mcp_agentbus.server.tokens import TokensFile
from mcp_agentbus.settings import Settings

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"
SESSION_HEADER = b"mcp-session-id"  # of a legacy session (ASGI header names are lower case)
REVOKED_GRACE_SECONDS = 2 * PROGRESS_EVERY  # a waiting call notices a revocation within one tick


class SessionRefused(Exception):
    """A new session past a cap, with the answer that says so."""

    def __init__(self, answer: Response) -> None:
        super().__init__(answer)
        self.answer = answer


class Sessions:
    """The legacy sessions of this process as the SDK's session manager holds them. The SDK (2.3)
    offers no public view of them or their owners; this class is the one place that reads it.

    A new session is admitted against our caps where the SDK admits it: under its lock, in the step that
    registers it, so that sessions opened at once are counted exactly. (Counted from outside, a session
    the SDK has registered and not yet answered for is seen twice: a server near its cap refused
    sessions it had room for.) A refusal raises `SessionRefused`, which `SessionCaps` answers."""

    def __init__(self, manager: StreamableHTTPSessionManager, settings: Settings) -> None:
        self._manager = manager
        self._settings = settings

        def admit(requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
            refusal = self._refusal(None if requestor is None else requestor["client_id"])
            if refusal is not None:
                raise SessionRefused(refusal)
            return type(manager)._admit_session(manager, requestor)  # whatever class it has by then

        manager._admit_session = admit  # type: ignore[method-assign]  # the SDK calls it under its lock

    def total(self) -> int:
        return len(self._manager._server_instances)

    def owned_by(self, token_id: str) -> int:
        return sum(owner["client_id"] == token_id for owner in self._manager._session_owners.values())

    def end_revoked(self, tokens: TokensFile) -> None:
        """End every session whose token is gone from the file, shortly: its GET stream closes and
        what it subscribed to is dropped (at once, by `Push`). The grace lets a call that waits on
        the session see the revocation itself and answer `forbidden` rather than be cut off."""
        loop = asyncio.get_running_loop()
        for session_id, owner in list(self._manager._session_owners.items()):
            transport = self._manager._server_instances.get(session_id)
            scope = None if transport is None else transport.idle_scope
            if scope is not None and not tokens.holds_id(owner["client_id"]):
                loop.call_later(REVOKED_GRACE_SECONDS, scope.cancel)  # ends as if it had expired

    def _refusal(self, owner: str | None) -> Response | None:
        """Why a new session of `owner` (a token's id; None without tokens) may not open now, if so."""
        settings = self._settings
        idle = f"{settings.session_idle_seconds:g} s"
        if owner is not None:
            held = self.owned_by(owner)
            if held >= settings.max_sessions_per_token:
                logger.warning("refused a new session: token %s holds %d", owner, held)
                return refused(
                    429,
                    "too_many_sessions",
                    f"your token already holds {held} sessions on this server (at most "
                    f"{settings.max_sessions_per_token})",
                    "Reuse an open session (send its Mcp-Session-Id) or end ones you no longer use "
                    f"(HTTP DELETE with their Mcp-Session-Id); an unused session ends after {idle}.",
                )
        if self.total() >= settings.max_sessions:
            logger.warning("refused a new session: %d sessions are open", self.total())
            return refused(
                503,
                "too_many_sessions",
                f"this server holds as many sessions as it may ({settings.max_sessions})",
                f"Retry in a while (an unused session ends after {idle}), or use another server.",
            )
        return None


class SessionCaps:
    """ASGI middleware that answers a new session refused at admission (`Sessions`) with its refusal:
    429 or 503 and a JSON-RPC error saying what to do, so one token cannot take every session. Nothing
    was answered yet when admission refuses."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._app(scope, receive, send)
        except SessionRefused as refusal:
            await refusal.answer(scope, receive, send)


def refused(status: int, code: str, message: str, hint: str, retry_after: int = 30) -> Response:
    """An HTTP refusal of a session request, as a JSON-RPC error that says what to do."""
    error = {"code": code, "message": message, "hint": hint}
    body = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32000, "message": f"{message}. {hint}", "data": {"error": error}},
    }
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"Retry-After": str(retry_after)},
    )
