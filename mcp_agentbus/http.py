"""Streamable HTTP: the MCP endpoint at ``/mcp`` (both protocol eras) and ``/healthz``.

Every process keeps only connections in memory; the bus itself is in Redis, so several processes on one
Redis behave as one bus. Legacy (``initialize``) clients get a session bound to the process that
created it: behind a load balancer, route them sticky on ``Mcp-Session-Id`` or run ``--stateless``.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
from collections.abc import Sequence

import anyio
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from mcp_agentbus import __version__
from mcp_agentbus.connection import backend, close, connect
from mcp_agentbus.errors import BackendUnavailable
from mcp_agentbus.keys import Keys
from mcp_agentbus.server import build_server
from mcp_agentbus.settings import Settings
from mcp_agentbus.tokens import TokensFile

MCP_PATH = "/mcp"
LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")
HEALTH_TIMEOUT = 2.0
HEALTH_KEY_TTL_MS = 60_000

logger = logging.getLogger(__name__)


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
    tokens: TokensFile | None = None,
) -> Starlette:
    """The ASGI app of one server process. Requests must name a loopback host or one of
    `allowed_hosts` (``host:port`` or ``host:*``), against DNS rebinding; with `tokens`, they must
    also carry a bearer token from that file (401 otherwise) and act within its grant."""
    server = build_server(settings, legacy_subscriptions=not stateless, tokens=tokens)

    health_key = Keys(settings.namespace).health

    async def healthz(_: Request) -> JSONResponse:
        """Whether this process can serve MCP calls now (for load balancers; never authenticated): its
        MCP endpoint runs, and its Redis answers and takes a change, which a full, busy, read-only or
        paused Redis does not. A fresh connection each time: it is what a new request would need."""
        if not server.serving:
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
        return JSONResponse({"status": "ok", "redis": "ok", "version": __version__})

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
        streamable_http_path=MCP_PATH, stateless_http=stateless, transport_security=security
    )
    app.add_route("/healthz", healthz, methods=["GET"])
    return app


def serve(app: Starlette, host: str, port: int) -> None:
    """Run `app` until interrupted; uvicorn logs through our stderr logging."""
    import uvicorn

    # What is loaded by now lives as long as the process: keep it out of the collector's full passes,
    # which would otherwise walk it again and again under load (pauses of 100 ms and more).
    gc.freeze()
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)).run()
