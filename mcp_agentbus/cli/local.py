"""``agentbus local``: the user's local bus (one redis-server on a unix socket): status, start, stop."""

from __future__ import annotations

import sys

import click

from mcp_agentbus.cli.common import fail, load_settings
from mcp_agentbus.cli.words import counted
from mcp_agentbus.redis.local import LOCAL_SCHEME, LocalBus, LocalBusError


@click.group()
def local() -> None:
    """The local bus: one redis-server for all your agentbus processes, on a unix socket in
    ~/.local/state/agentbus with AOF on. Used when no Redis is configured (AGENTBUS_REDIS_URL=local://)."""


_local_url_option = click.option(
    "--redis-url",
    default=None,
    help="local:// or local:///dir (default: the user's state directory) [env: AGENTBUS_REDIS_URL]",
)


def _local_bus(redis_url: str | None) -> LocalBus:
    url = redis_url or load_settings().redis_url
    if not url.startswith(LOCAL_SCHEME):
        url = LOCAL_SCHEME  # AGENTBUS_REDIS_URL names another Redis; the local bus is still the user's
    return LocalBus.from_url(url)


@local.command("status")
@_local_url_option
def local_status(redis_url: str | None) -> None:
    """Whether the local bus runs, and its socket, version, clients, memory and persistence.
    Exits 1 when it is not running."""
    bus = _local_bus(redis_url)
    info = bus.info()
    if info is None:
        click.echo(f"not running ({bus.directory}); any `agentbus serve` without a Redis URL starts it")
        sys.exit(1)
    keys = sum(v.get("keys", 0) for k, v in info.items() if k.startswith("db") and isinstance(v, dict))
    aof = "AOF" if str(info.get("aof_enabled")) == "1" else "no AOF"
    click.echo(
        f"running: {bus.url}\n"
        f"  redis {info.get('redis_version')}, pid {info.get('process_id')}, "
        f"up {info.get('uptime_in_seconds')} s\n"
        f"  clients: {int(info.get('connected_clients', 1)) - 1} besides this one\n"
        f"  memory: {info.get('used_memory_human')}, keys: {keys}\n"
        f"  persistence: {aof} in {bus.directory}\n"
        f"  log: {bus.log}"
    )


@local.command("start")
@_local_url_option
def local_start(redis_url: str | None) -> None:
    """Start the local bus (agentbus serve also does this when it needs it)."""
    bus = _local_bus(redis_url)
    try:
        url, started = bus.ensure()
    except LocalBusError as exc:
        fail(str(exc))
    click.echo(f"{'started' if started else 'already running'}: {url}")


@local.command("stop")
@_local_url_option
def local_stop(redis_url: str | None) -> None:
    """Stop the local bus; its data stays on disk (AOF) for the next start. Servers still connected
    get backend_unavailable until it runs again."""
    bus = _local_bus(redis_url)
    info = bus.info()
    if info is None or not bus.stop():
        click.echo(f"not running ({bus.directory})")
        return
    others = int(info.get("connected_clients", 1)) - 1
    click.echo(
        f"stopped the local bus in {bus.directory}"
        + (f" ({counted(others, 'client was', 'clients were')} connected)" if others else "")
    )
