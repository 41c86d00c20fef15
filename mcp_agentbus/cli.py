"""The ``agentbus`` command. On stdio, stdout carries only the protocol; everything else goes to stderr."""

from __future__ import annotations

import logging
import sys
from typing import Any

import anyio
import click
from pydantic import ValidationError

from mcp_agentbus.connection import connect, redact
from mcp_agentbus.settings import Settings


def fail(message: str) -> None:
    click.echo(f"agentbus: {message}", err=True)
    sys.exit(2)


def load_settings(**flags: Any) -> Settings:
    """Settings from AGENTBUS_* with the given (non-None) flags on top; bad values end the command."""
    try:
        return Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        fail(f"invalid settings ({problems}). Check the AGENTBUS_* environment and the flags.")
        raise  # unreachable: fail() exits


async def _ping(url: str) -> None:
    client = connect(url)
    try:
        with anyio.fail_after(5):
            await client.ping()
    finally:
        await client.aclose()


def check_redis(settings: Settings) -> None:
    """Exit with a clear message (what URL, what to do) when Redis cannot be reached."""
    try:
        anyio.run(_ping, settings.redis_url)
    except Exception as exc:  # any failure here means the same thing to the user
        fail(
            f"cannot reach Redis at {redact(settings.redis_url)} ({exc or type(exc).__name__}).\n"
            "  Start a Redis server (for example `redis-server`), point AGENTBUS_REDIS_URL or --redis-url\n"
            "  at a running one, or use --redis-url memory:// for an embedded bus inside this one process."
        )


@click.group()
@click.version_option(package_name="mcp-agentbus")
def main() -> None:
    """mcp-agentbus: a coordination bus for LLM agents on one Redis, spoken over MCP."""


@main.command()
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
    help="HTTP: listen on a non-loopback address without authentication. Anyone who can reach it can act.",
)
@click.option("--redis-url", help="redis://, rediss://, unix:// or memory:// [env: AGENTBUS_REDIS_URL]")
@click.option("--namespace", help="Swarm/project name; keys live under it [env: AGENTBUS_NAMESPACE]")
@click.option("--agent", help="Agent id used when a call names none [env: AGENTBUS_AGENT]")
@click.option("--tools", help="all, worker, coordinator, or a comma list of tools [env: AGENTBUS_TOOLS]")
@click.option(
    "--max-wait", "max_wait_seconds", type=float, help="Cap on wait_seconds [env: AGENTBUS_MAX_WAIT_SECONDS]"
)
@click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="[env: AGENTBUS_LOG_LEVEL]"
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
    if transport == "http":
        from mcp_agentbus.http import is_loopback

        if not is_loopback(host) and not unsafe_no_auth:
            fail(
                f"refusing to listen on {host} without authentication: anyone who can reach it could act "
                "as any agent.\n  Listen on 127.0.0.1 (and put an authenticating proxy in front), or pass "
                "--unsafe-no-auth if this network is truly private."
            )
    logging.basicConfig(
        stream=sys.stderr, level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not settings.redis_url.startswith("memory://"):
        check_redis(settings)
    from mcp_agentbus.server import build_server  # the MCP stack loads only for commands that serve

    try:
        if transport == "http":
            from mcp_agentbus.http import build_app
            from mcp_agentbus.http import serve as serve_http

            app = build_app(settings, allowed_hosts=allowed_hosts, stateless=stateless)
        else:
            server = build_server(settings)
    except ValueError as exc:
        fail(str(exc))
    if transport == "http":
        click.echo(f"agentbus: serving MCP at http://{host}:{port}/mcp (health: /healthz)", err=True)
        serve_http(app, host, port)
    else:
        server.run("stdio")
