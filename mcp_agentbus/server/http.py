"""Streamable HTTP: the MCP endpoint at ``/mcp`` (both protocol eras), ``/healthz`` and the web dashboard
(``/``, ``/dashboard/*``: `dashboard.py`).

Every process keeps only connections in memory; the bus itself is in Redis, so several processes on one
Redis behave as one bus. Legacy (``initialize``) clients get a session bound to the process that
created it: behind a load balancer, route them sticky on ``Mcp-Session-Id`` or run ``--stateless``;
among the workers of one ``--workers N`` server, `SessionRoutes` passes requests on to it.

What one client can hold is bounded: legacy sessions per token and in all (`SessionCaps`; an idle one
ends after ``AGENTBUS_SESSION_IDLE_SECONDS``, a revoked token's at once), open connections
(uvicorn's ``limit_concurrency``), and the time to send a request (`RequestDeadline`).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from mcp_agentbus import __version__
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.errors import BackendUnavailable
from mcp_agentbus.redis.connection import backend, close, connect
from mcp_agentbus.redis.keys import Keys
from mcp_agentbus.server import collector
from mcp_agentbus.server.app import build_server
from mcp_agentbus.server.dashboard import Dashboard
from mcp_agentbus.server.dashboard_replies import NOT_ROUTED
from mcp_agentbus.server.hang_ups import CLIENT_GONE, end_calls_on_hang_up
from mcp_agentbus.server.json_answers import answer_per_call
from mcp_agentbus.server.request_deadline import protocol
from mcp_agentbus.server.session_routes import SessionRoutes
from mcp_agentbus.server.sessions import MCP_PATH, SessionCaps, Sessions
from mcp_agentbus.server.tokens import TokensFile
from mcp_agentbus.server.utf8_wire import write_utf8
from mcp_agentbus.server.workers import STAMP_SECONDS, Fleet
from mcp_agentbus.settings import Settings

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")
HEALTH_TIMEOUT = 2.0
HEALTH_KEY_TTL_MS = 60_000
# On shutdown, what still runs this long (beyond the longest wait a tool call may make) after new
# connections stopped is cancelled: an open stream (a dashboard tab, an MCP listen) never ends by
# itself, and uvicorn would otherwise wait for it forever.
SHUTDOWN_MARGIN_SECONDS = 5


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(
    settings: Settings,
    *,
    allowed_hosts: Sequence[str] = (),
    stateless: bool = False,
    json_response: bool = False,
    tokens: TokensFile | None = None,
    fleet: Fleet | None = None,
    slot: int = 0,
) -> Starlette:
    """The ASGI app of one server process. Requests must name a loopback host or one of
    `allowed_hosts` (``host:port`` or ``host:*``), against DNS rebinding; with `tokens`, they must
    also carry a bearer token from that file (401 otherwise) and act within its grant. As worker
    `slot` of a `fleet` (``--workers``), it stamps its slot while it serves, and ``/healthz`` reports
    every worker. A tool call that cannot wait is answered with one JSON body (`json_answers.py`); with
    `json_response`, every call is: less CPU per call, but nothing reaches the client while its call
    waits (no progress)."""
    server = build_server(settings, legacy_subscriptions=not stateless, tokens=tokens)
    logging.getLogger("mcp.server.streamable_http").addFilter(_client_gone)

    health_key = Keys(settings.namespace).health

    async def healthz(_: Request) -> JSONResponse:
        """Whether this process can serve MCP calls now (for load balancers; never authenticated): its
        MCP endpoint runs, and its Redis answers and takes a change, which a full, busy, read-only or
        paused Redis does not. A fresh connection each time: it is what a new request would need."""
        if server.running is None:
            return JSONResponse({"status": "unavailable", "mcp": "not serving (see the server log)"}, 503)
        client = connect(settings.redis_url, timeout=HEALTH_TIMEOUT)
        try:
            with backend(settings.redis_url, HEALTH_TIMEOUT), anyio.fail_after(HEALTH_TIMEOUT):
                await client.set(health_key, __version__, px=HEALTH_KEY_TTL_MS)
        except BackendUnavailable as exc:  # the details (host, Redis's words) are in the log
            return JSONResponse({"status": "unavailable", "redis": exc.message}, status_code=503)
        except Exception as exc:  # e.g. an ACL that forbids the write: still not able to serve
            logger.warning("health check failed", exc_info=True)
            return JSONResponse({"status": "unavailable", "redis": type(exc).__name__}, status_code=503)
        finally:
            await close(client)
        if fleet is None:
            return JSONResponse({"status": "ok", "redis": "ok", "version": __version__})
        serving = fleet.serving()
        return JSONResponse(
            {
                # this process and Redis serve: the port answers, with fewer processes while one restarts
                "status": "ok" if serving == fleet.size else "degraded",
                "redis": "ok",
                "version": __version__,
                "workers": {"serving": serving, "of": fleet.size, "answered_by": slot},
            }
        )

    # 'host:*' also covers the bare host: a proxy on the default port passes Host without a port.
    hosts = [
        *LOOPBACK_HOSTS,
        *allowed_hosts,
        *(h.removesuffix(":*") for h in allowed_hosts if h.endswith(":*")),
    ]
    security = TransportSecuritySettings(
        allowed_hosts=hosts,
        allowed_origins=[f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")],
    )
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=stateless,
        json_response=json_response,
        transport_security=security,
        session_idle_timeout=settings.session_idle_seconds,
        max_sessions=settings.max_sessions,
    )
    app.add_route("/healthz", healthz, methods=["GET"])
    if fleet is not None:

        def stamp() -> None:
            if server.running is not None:  # the MCP endpoint runs (not starting, not stopping)
                fleet.stamp(slot)

        _stamp_while_serving(app, stamp)

    async def bus_for(namespace: str) -> AgentBus | None:
        running = server.running
        return None if running is None else (await running.namespaces.subscribed(namespace)).bus

    app.router.routes.extend(Dashboard(settings.namespace, bus_for, security, tokens).routes())
    for status, handler in NOT_ROUTED.items():
        app.add_exception_handler(status, handler)
    app.state.agentbus = server
    end_calls_on_hang_up(server.session_manager)
    write_utf8()
    if not json_response:  # a call that cannot wait is answered with one JSON body all the same
        answer_per_call(server.session_manager)
    if not stateless:
        sessions = Sessions(server.session_manager, settings)
        app.user_middleware.append(Middleware(SessionCaps))
        if tokens is not None:
            tokens.on_reload(lambda: sessions.end_revoked(tokens))
        if fleet is not None:  # first of all: a request passed on is authenticated where it is served
            routes = Middleware(SessionRoutes, slot=slot, size=fleet.size, directory=fleet.sockets)
            app.user_middleware.insert(0, routes)
    return app


def _client_gone(record: logging.LogRecord) -> bool:
    """The SDK logs a client that hung up before its request was whole as an error with a traceback:
    one line at INFO says it, since nothing went wrong on our side and nothing was run."""
    if record.exc_info is None or not isinstance(record.exc_info[1], ClientDisconnect):
        return True
    record.msg, record.args, record.exc_info, record.exc_text = (
        CLIENT_GONE,
        (),
        None,
        None,
    )
    record.levelno, record.levelname = logging.INFO, "INFO"
    return logging.getLogger(record.name).isEnabledFor(logging.INFO)


def _stamp_while_serving(app: Starlette, stamp: Callable[[], None]) -> None:
    """Run `stamp` every `STAMP_SECONDS` from the app's own event loop while the app runs: a stamp
    proves the loop turns, which a thread's would not."""
    serve_app = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[Any]:
        async def stamping() -> None:
            while True:
                stamp()
                await anyio.sleep(STAMP_SECONDS)

        async with serve_app(app) as state, anyio.create_task_group() as tg:
            tg.start_soon(stamping)
            yield state
            tg.cancel_scope.cancel()

    app.router.lifespan_context = lifespan


def shutdown_grace(settings: Settings) -> int:
    """Seconds a stopping server gives what still runs: every tool call's wait is over by then."""
    return math.ceil(settings.max_wait_seconds) + SHUTDOWN_MARGIN_SECONDS


def uvicorn_config(
    app: Starlette, host: str, port: int, settings: Settings, *, grace_seconds: int | None = None
) -> uvicorn.Config:
    """How uvicorn serves `app`: with our request deadline (`request_deadline.py`; uvloop too when the
    ``fast`` extra installed it: uvicorn's ``loop="auto"``) and connection limit, logging through
    our stderr logging; on shutdown, what runs `grace_seconds` later (by default, when every tool
    call's wait is over) is cancelled."""
    if grace_seconds is None:
        grace_seconds = shutdown_grace(settings)
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        http=protocol(settings.http_request_timeout_seconds),
        limit_concurrency=settings.http_max_connections,
        timeout_graceful_shutdown=grace_seconds,
    )


def serve(
    app: Starlette,
    host: str,
    port: int,
    settings: Settings,
    *,
    grace_seconds: int | None = None,
    sockets: Sequence[socket.socket] = (),
) -> bool:
    """Run `app` until interrupted (`uvicorn_config` says how), on `sockets` when given (a worker's
    share of one port, and its own Unix socket), else bound to `host`:`port`. False when it never
    started serving (uvicorn logged why: the port taken, the app's startup failed)."""
    import uvicorn

    collector.settle()
    config = uvicorn_config(app, host, port, settings, grace_seconds=grace_seconds)
    server = uvicorn.Server(config)
    server.run(sockets=list(sockets) or None)
    return server.started
