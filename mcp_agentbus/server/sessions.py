"""The legacy (``initialize``) sessions of an HTTP server process, and their admission: a token past its
own cap gets 429, anyone past the server-wide cap 503 (`SessionCaps`); a revoked token's sessions end
(`Sessions.end_revoked`)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_agentbus.core.waiting import PROGRESS_EVERY
from mcp_agentbus.server.tokens import TokensFile
from mcp_agentbus.settings import Settings

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"
SESSION_HEADER = b"mcp-session-id"  # of a legacy session (ASGI header names are lower case)
REVOKED_GRACE_SECONDS = 2 * PROGRESS_EVERY  # a waiting call notices a revocation within one tick


class Sessions:
    """The legacy sessions of this process as the SDK's session manager holds them. The SDK (2.3)
    offers no public view of them or their owners; this class is the one place that reads it."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self._manager = manager

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


class SessionCaps:
    """Admission of new legacy sessions: a token past its own cap gets 429, anyone past the
    server-wide cap 503, each with a JSON-RPC error saying what to do, so one token cannot take
    every session. Without tokens only the server-wide cap applies."""

    def __init__(self, app: ASGIApp, sessions: Sessions, settings: Settings) -> None:
        self._app = app
        self._sessions = sessions
        self._settings = settings
        self._opening: Counter[str | None] = Counter()  # requests that may be opening one now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _opens_session(scope):
            await self._app(scope, receive, send)
            return
        user = scope.get("user")
        owner = user.access_token.client_id if isinstance(user, AuthenticatedUser) else None
        refusal = self._refusal(owner)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        # Counted until its answer starts (by then the SDK holds the session, if it opened one), so
        # opening requests that race cannot overshoot a cap together.
        self._opening[owner] += 1
        counted = True

        def uncount() -> None:
            nonlocal counted
            if counted:
                counted = False
                self._opening[owner] -= 1
                if not self._opening[owner]:
                    del self._opening[owner]

        async def answering(message: Message) -> None:
            if message["type"] == "http.response.start":
                uncount()
            await send(message)

        try:
            await self._app(scope, receive, answering)
        finally:
            uncount()

    def _refusal(self, owner: str | None) -> Response | None:
        settings = self._settings
        idle = f"{settings.session_idle_seconds:g} s"
        if owner is not None:
            held = self._sessions.owned_by(owner) + self._opening[owner]
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
        if self._sessions.total() + self._opening.total() >= settings.max_sessions:
            logger.warning("refused a new session: %d sessions are open", self._sessions.total())
            return refused(
                503,
                "too_many_sessions",
                f"this server holds as many sessions as it may ({settings.max_sessions})",
                f"Retry in a while (an unused session ends after {idle}), or use another server.",
            )
        return None


def _opens_session(scope: Scope) -> bool:
    """A POST to the MCP endpoint without a session id, in a legacy protocol era: the SDK opens a
    session for it (and discards it again unless it was a good initialize)."""
    if scope["type"] != "http" or scope["path"] != MCP_PATH or scope["method"] != "POST":
        return False
    headers = dict(scope["headers"])
    version = headers.get(b"mcp-protocol-version")
    return SESSION_HEADER not in headers and (
        version is None or version.decode("latin-1") in HANDSHAKE_PROTOCOL_VERSIONS
    )


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
