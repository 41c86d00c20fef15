"""``agentbus serve``: the MCP server on stdio or HTTP, and the tokens HTTP requires."""

from __future__ import annotations

import logging
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from mcp_agentbus.cli.common import check_redis, fail, load_settings, use_local_bus
from mcp_agentbus.server.tokens import TokensFile
from mcp_agentbus.server.workers import STUCK_SECONDS
from mcp_agentbus.settings import Settings

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from mcp_agentbus.server.workers import Fleet

MAX_WORKERS = 64
STARTUP_FAILED = 3  # a worker's exit status when it never served (uvicorn's own for that)


def http_auth(settings: Settings, host: str, unsafe_no_auth: bool) -> TokensFile | None:
    """The tokens an HTTP server requires: those of the tokens file when it exists. Without them it
    listens on loopback only, unless the user insists."""
    from mcp_agentbus.server.http import is_loopback

    tokens = TokensFile(settings.tokens_file)
    if unsafe_no_auth:
        click.echo(
            f"agentbus: WARNING: --unsafe-no-auth: no tokens are checked; anyone who can reach {host} "
            "can act as any agent in any way.",
            err=True,
        )
        return None
    if tokens.exists():
        try:
            tokens.check_private()
            tokens.grants()
        except (ValueError, OSError) as exc:
            fail(str(exc))
        return tokens
    if not is_loopback(host):
        fail(
            f"refusing to listen on {host} without authentication: anyone who can reach it could act "
            "as any agent.\n  Create a token first (`agentbus token create --agent 'worker-*'`), listen on "
            "127.0.0.1, or pass --unsafe-no-auth if this network is truly private."
        )
    return None


@click.command()
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP: address to listen on.")
@click.option("--port", type=int, default=8765, show_default=True, help="HTTP: port to listen on.")
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="HTTP: a Host header to accept besides loopback, as host:port or host:* (repeatable).",
)
@click.option(
    "--stateless",
    is_flag=True,
    help="HTTP: no sessions for legacy clients (no pushes to them); for load balancers without stickiness.",
)
@click.option(
    "--json-responses",
    is_flag=True,
    help="HTTP: answer each call with one JSON body, not an event stream: about a third less server CPU per "
    "call, but no progress notifications while a call waits.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, MAX_WORKERS),
    default=1,
    show_default=True,
    help="HTTP: server processes sharing the port, one bus; a legacy session's requests reach the one "
    "that holds it.",
)
@click.option(
    "--worker-timeout",
    "worker_timeout",
    type=click.FloatRange(min=2.0),
    default=STUCK_SECONDS,
    show_default=True,
    help="HTTP with --workers: seconds a worker's event loop may stay still (blocked, or the process "
    "stopped) before it is killed and started again; its sessions end then.",
)
@click.option(
    "--unsafe-no-auth",
    is_flag=True,
    help="HTTP: serve without tokens even on a non-loopback address. Anyone who can reach it can act.",
)
@click.option(
    "--redis-url",
    help="redis://, rediss://, unix://, …; default local:// (your shared local bus); memory:// for one "
    "process [env: AGENTBUS_REDIS_URL]",
)
@click.option("--namespace", help="Swarm/project name; keys live under it [env: AGENTBUS_NAMESPACE]")
@click.option("--agent", help="Agent id used when a call names none [env: AGENTBUS_AGENT]")
@click.option(
    "--tools", help="worker, coordinator, all, tool names, or a comma list of them [env: AGENTBUS_TOOLS]"
)
@click.option(
    "--max-wait", "max_wait_seconds", type=float, help="Cap on wait_seconds [env: AGENTBUS_MAX_WAIT_SECONDS]"
)
@click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="[env: AGENTBUS_LOG_LEVEL]"
)
@click.option(
    "--max-sessions",
    type=int,
    help="HTTP: legacy sessions open at once in this process [env: AGENTBUS_MAX_SESSIONS; 1000]",
)
@click.option(
    "--max-sessions-per-token",
    type=int,
    help="HTTP: legacy sessions one token may hold [env: AGENTBUS_MAX_SESSIONS_PER_TOKEN; 100]",
)
@click.option(
    "--session-idle",
    "session_idle_seconds",
    type=float,
    help="HTTP: seconds after which an unused legacy session ends [env: AGENTBUS_SESSION_IDLE_SECONDS; 300]",
)
def serve(
    transport: str,
    host: str,
    port: int,
    allowed_hosts: tuple[str, ...],
    stateless: bool,
    json_responses: bool,
    workers: int,
    worker_timeout: float,
    unsafe_no_auth: bool,
    **flags: Any,
) -> None:
    """Run the MCP server: stdio (for Claude Code, Claude Desktop and agent runners) or streamable
    HTTP at http://HOST:PORT/mcp (for remote agents; /healthz reports Redis reachability)."""
    settings = load_settings(**flags)
    if workers > 1 and transport != "http":
        fail("--workers is for --transport http; a stdio server serves the one client that started it.")
    if workers > 1 and settings.redis_url.startswith("memory://"):
        fail("--workers needs a shared Redis: memory:// would give each worker a bus of its own.")
    tokens = None
    if transport == "http":
        tokens = http_auth(settings, host, unsafe_no_auth)
    logging.basicConfig(
        stream=sys.stderr, level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.redis_url.startswith("memory://"):
        click.echo(
            "agentbus: memory:// keeps the bus inside this process; other agentbus processes will not see "
            "it (leave AGENTBUS_REDIS_URL unset for the shared local bus).",
            err=True,
        )
    else:
        settings = use_local_bus(settings)
        check_redis(settings)
    from mcp_agentbus.server import collector  # the MCP stack loads only for commands that serve
    from mcp_agentbus.server.app import build_server

    if transport == "http":
        auth = f"bearer tokens from {tokens.path}" if tokens else "no auth"
        if tokens is None and not unsafe_no_auth:
            auth += f" until restarted after `agentbus token create` makes {settings.tokens_file}"
        served = Served(allowed_hosts, stateless, json_responses, tokens, auth)
        serve_http(settings, host, port, served, workers, worker_timeout)
        return
    try:
        server = build_server(settings)
    except ValueError as exc:
        fail(str(exc))
    collector.settle()
    server.run("stdio")


@dataclass(frozen=True)
class Served:
    """How an HTTP server serves, as its flags say."""

    allowed_hosts: tuple[str, ...]
    stateless: bool
    json_responses: bool
    tokens: TokensFile | None
    auth: str  # how it authenticates, in words for its first log line


def serve_http(
    settings: Settings, host: str, port: int, served: Served, workers: int, worker_timeout: float
) -> None:
    """Serve HTTP in this process, or in `workers` processes on one port (`server/workers.py`), each
    killed and started again once silent for `worker_timeout` seconds."""
    from mcp_agentbus.server.http import build_app, serve, shutdown_grace
    from mcp_agentbus.server.session_routes import MAX_SOCKET_PATH, socket_path
    from mcp_agentbus.server.workers import Fleet, bind, supervise

    def app(fleet: Fleet | None = None, slot: int = 0) -> Starlette:
        try:
            return build_app(
                settings,
                allowed_hosts=served.allowed_hosts,
                stateless=served.stateless,
                json_response=served.json_responses,
                tokens=served.tokens,
                fleet=fleet,
                slot=slot,
            )
        except ValueError as exc:
            fail(str(exc))

    first = app()  # a bad setting fails here, once, before any worker starts
    where = f"http://{host}:{port}/mcp"
    if workers == 1:
        click.echo(f"agentbus: serving MCP at {where} ({served.auth}; health: /healthz)", err=True)
        if not serve(first, host, port, settings):
            fail("the server did not start (the lines above say why)")
        return
    try:
        sock = bind(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    fleet = Fleet.shared(workers)
    longest = socket_path(fleet.sockets, workers - 1)
    if len(bytes(longest)) > MAX_SOCKET_PATH:
        fleet.sockets.rmdir()
        fail(
            f"the workers' Unix sockets would be at {longest}, longer than a socket path may be "
            f"({MAX_SOCKET_PATH} bytes): set TMPDIR to a shorter directory"
        )
    click.echo(
        f"agentbus: serving MCP at {where} with {workers} worker processes"
        f"{', stateless' if served.stateless else ''} ({served.auth}; health: /healthz)",
        err=True,
    )
    supervise(
        fleet,
        lambda slot: _run_worker(app(fleet, slot), host, port, settings, sock, fleet, slot),
        shutdown_grace(settings),
        sock,
        worker_timeout,
    )


def _run_worker(
    app: Starlette, host: str, port: int, settings: Settings, sock: socket.socket, fleet: Fleet, slot: int
) -> int:
    """Worker `slot`: the shared port, and its own Unix socket, where other workers pass on the
    requests of the legacy sessions it holds."""
    from mcp_agentbus.server.http import serve
    from mcp_agentbus.server.session_routes import listen, socket_path

    own = listen(socket_path(fleet.sockets, slot))
    return 0 if serve(app, host, port, settings, sockets=[sock, own]) else STARTUP_FAILED
