"""The web dashboard: a read-only page of one namespace that a person keeps open beside the agents.

``GET /`` is the page (plain HTML and JS under ``static/``, no build); ``GET /dashboard/snapshot`` is the
namespace as JSON (`dashboard_data.take`, as `agentbus status` reads it; ``?workflow=<id>`` adds that
workflow's tasks); ``GET /dashboard/stream`` is a server-sent-event stream that says ``changed`` whenever a
wake-up hint arrives for the namespace (coalesced to a few a second; a keep-alive comment every
`KEEPALIVE_SECONDS`), on which the page fetches the snapshot again.

Access is that of ``/mcp``: the Host/Origin checks against DNS rebinding always; without a tokens file,
loopback clients only; with one, the data routes need ``Authorization: Bearer <token>`` (401 otherwise)
and show the token's namespace. The page sends the header with ``fetch`` (streamed for the events), so a
token never goes into a URL, where logs and browser history would keep it. Every data or action route
(this module's and those of the other ``dashboard_*`` modules) starts with `Dashboard.open`, which does
all of that and says whether the caller may act (`may_act`) or only look.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

import anyio
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.errors import AgentBusError
from mcp_agentbus.redis.connection import close, connect
from mcp_agentbus.server.dashboard_data import take
from mcp_agentbus.server.tokens import Grant, TokensFile
from mcp_agentbus.settings import Settings

MAX_STREAMS = 16  # open event streams per server process; past it a new one gets 503
KEEPALIVE_SECONDS = 15.0  # a comment line, so proxies and the browser keep an idle stream open
COALESCE_SECONDS = 0.3  # at most about three "changed" events a second, however busy the bus
EVENTS_SHOWN = 30

STATIC = {  # path → (file under static/, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/dashboard/app.css": ("app.css", "text/css; charset=utf-8"),
}
ACTING_ROLES = ("all", "operator")  # roles whose tokens may act from the dashboard, not only look

HEADERS = {  # the page loads nothing from elsewhere, and no other site may frame it
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def may_act(grant: Grant | None) -> bool:
    """Whether a dashboard caller may act (send, cancel, retry, release), not only look: anyone the
    server lets in without a tokens file (loopback only), else a token whose role is, or lists,
    ``all`` or ``operator``."""
    if grant is None:
        return True
    return any(item.strip() in ACTING_ROLES for item in grant.role.split(","))


@dataclass(frozen=True)
class Opened:
    """A dashboard request let in: the bus of the namespace it shows, the token's grant (None without
    a tokens file) and whether it may act."""

    bus: AgentBus
    grant: Grant | None
    may_act: bool


class _Stream:
    """One open event stream: poked by every hint of its namespace, it tells its page once."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._event = anyio.Event()

    def poke(self) -> None:
        self._event.set()

    async def changed(self) -> None:
        """Returns once a hint came since the last time it returned."""
        await self._event.wait()
        self._event = anyio.Event()


class Dashboard:
    """The dashboard's routes, for namespaces that `bus_for` opens (already hearing their wake-ups)."""

    def __init__(
        self,
        namespace: str,
        bus_for: Callable[[str], Awaitable[AgentBus | None]],
        security: TransportSecuritySettings,
        tokens: TokensFile | None = None,
    ) -> None:
        self._namespace = namespace
        self._bus_for = bus_for
        self._security = TransportSecurityMiddleware(security)
        self._tokens = tokens
        self._streams: set[_Stream] = set()
        self._heard: set[str] = set()  # namespaces whose hints are handed to the streams

    def routes(self) -> list[Route]:
        return [
            *(Route(path, self._static, methods=["GET"]) for path in STATIC),
            Route("/dashboard/snapshot", self._snapshot, methods=["GET"]),
            Route("/dashboard/stream", self._stream, methods=["GET"]),
        ]

    async def _refused(self, request: Request) -> Response | None:
        # A POST (an action) must also be JSON, which a form on another site cannot send unasked.
        refused = await self._security.validate_request(request, is_post=request.method == "POST")
        if refused is not None:
            return refused
        client = request.client.host if request.client else ""
        if self._tokens is None and not _is_loopback(client):
            return _error(
                403,
                "this server has no tokens file, so its dashboard answers loopback only",
                "Open it on the server's machine, or serve with a tokens file and send a token.",
            )
        return None

    def _grant(self, request: Request) -> Grant | Response | None:
        """The request's grant (None without tokens), or the 401 to answer."""
        if self._tokens is None:
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        grant = self._tokens.find(token.strip()) if scheme.lower() == "bearer" and token else None
        if grant is None:
            return _error(
                401,
                "the dashboard needs a valid token",
                "Send 'Authorization: Bearer <token>' (agentbus token create makes one).",
            )
        return grant

    async def open(self, request: Request) -> Opened | Response:
        """The request let in (`Opened`), or the answer that refuses it: a foreign Host/Origin (421/403),
        no tokens file and not loopback (403), no valid token (401), the server not serving yet (503).
        Routes that act refuse with 403 themselves when `Opened.may_act` is False."""
        refused = await self._refused(request)
        if refused is not None:
            return refused
        grant = self._grant(request)
        if isinstance(grant, Response):
            return grant
        namespace = self._namespace if grant is None else grant.namespace
        bus = await self._bus_for(namespace)
        if bus is None:
            return _error(503, "the server is starting or stopping", "Try again in a moment.")
        if namespace not in self._heard:
            self._heard.add(namespace)
            bus.wakeups.listen(lambda _hint: self._poke(namespace))
        return Opened(bus, grant, may_act(grant))

    def _poke(self, namespace: str) -> None:
        for stream in self._streams:
            if stream.namespace == namespace:
                stream.poke()

    async def _static(self, request: Request) -> Response:
        refused = await self._refused(request)
        if refused is not None:
            return refused
        name, media_type = STATIC[request.url.path]
        body = resources.files(__package__).joinpath("static", name).read_bytes()
        return Response(body, media_type=media_type, headers=HEADERS)

    async def _snapshot(self, request: Request) -> Response:
        opened = await self.open(request)
        if isinstance(opened, Response):
            return opened
        try:
            snap = await take(
                opened.bus, workflow_id=request.query_params.get("workflow"), events=EVENTS_SHOWN
            )
        except AgentBusError as exc:  # e.g. an unknown workflow id
            status = 404 if exc.code == "not_found" else 400
            return JSONResponse(
                {"error": {"code": exc.code, "message": exc.message, "hint": exc.hint}}, status
            )
        return Response(snap.to_json(), media_type="application/json", headers=HEADERS)

    async def _stream(self, request: Request) -> Response:
        opened = await self.open(request)
        if isinstance(opened, Response):
            return opened
        if len(self._streams) >= MAX_STREAMS:
            return _error(
                503,
                f"this server already has {MAX_STREAMS} dashboard streams open",
                "Close a dashboard tab, or reload the page later (it refreshes on reload).",
            )
        stream = _Stream(opened.bus.settings.namespace)
        self._streams.add(stream)
        token = request.headers.get("authorization", "").partition(" ")[2].strip()

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 1000\n: connected\n\n"
                while self._tokens is None or self._tokens.find(token) is not None:  # revoked: ends
                    with anyio.move_on_after(KEEPALIVE_SECONDS) as idle:
                        await stream.changed()
                    if idle.cancelled_caught:
                        yield ": keep-alive\n\n"
                        continue
                    yield "event: changed\ndata: {}\n\n"
                    await anyio.sleep(COALESCE_SECONDS)  # hints meanwhile make one more event
            finally:
                self._streams.discard(stream)

        # The background task also frees the slot of a stream whose client left before it began.
        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={**HEADERS, "X-Accel-Buffering": "no"},
            background=BackgroundTask(self._streams.discard, stream),
        )


def dashboard_app(settings: Settings) -> Starlette:
    """Only the dashboard, of `settings.namespace`, for loopback clients (`agentbus dashboard`). It
    only reads and listens: no reaper, no MCP endpoint."""
    from mcp_agentbus.server.http import LOOPBACK_HOSTS

    bus: AgentBus | None = None

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        nonlocal bus
        redis = connect(settings.redis_url, timeout=settings.redis_timeout_seconds)
        try:
            async with anyio.create_task_group() as tg:
                opened = AgentBus(redis, settings)
                await tg.start(opened.wakeups.run)
                bus = opened
                yield
                bus = None
                tg.cancel_scope.cancel()
        finally:
            await close(redis)

    async def bus_for(_namespace: str) -> AgentBus | None:
        return bus

    security = TransportSecuritySettings(
        allowed_hosts=list(LOOPBACK_HOSTS),
        allowed_origins=[f"http://{host}" for host in LOOPBACK_HOSTS],
    )
    return Starlette(routes=Dashboard(settings.namespace, bus_for, security).routes(), lifespan=lifespan)


def _is_loopback(host: str) -> bool:
    from mcp_agentbus.server.http import is_loopback

    return is_loopback(host)


def _error(status: int, message: str, hint: str) -> JSONResponse:
    code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 503: "unavailable"}.get(
        status, "invalid"
    )
    return JSONResponse({"error": {"code": code, "message": message, "hint": hint}}, status_code=status)
