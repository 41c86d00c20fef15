"""``agentbus serve``: the MCP server on stdio or HTTP, and the tokens HTTP requires."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from mcp_agentbus.cli.common import check_redis, fail, load_settings, use_local_bus
from mcp_agentbus.server.tokens import TokensFile
from mcp_agentbus.settings import Settings


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
    unsafe_no_auth: bool,
    **flags: Any,
) -> None:
    """Run the MCP server: stdio (for Claude Code, Claude Desktop and agent runners) or streamable
    HTTP at http://HOST:PORT/mcp (for remote agents; /healthz reports Redis reachability)."""
    settings = load_settings(**flags)
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
    from mcp_agentbus.server.app import build_server  # the MCP stack loads only for commands that serve

    try:
        if transport == "http":
            from mcp_agentbus.server.http import build_app
            from mcp_agentbus.server.http import serve as serve_http

            app = build_app(settings, allowed_hosts=allowed_hosts, stateless=stateless, tokens=tokens)
        else:
            server = build_server(settings)
    except ValueError as exc:
        fail(str(exc))
    if transport == "http":
        auth = f"bearer tokens from {tokens.path}" if tokens else "no auth"
        if tokens is None and not unsafe_no_auth:
            auth += f" until restarted after `agentbus token create` makes {settings.tokens_file}"
        click.echo(f"agentbus: serving MCP at http://{host}:{port}/mcp ({auth}; health: /healthz)", err=True)
        serve_http(app, host, port, settings)
    else:
        server.run("stdio")
