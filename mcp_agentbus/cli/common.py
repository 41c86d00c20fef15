"""What the ``agentbus`` commands share: failing with a message, settings from flags, reaching Redis."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import anyio
import click
from pydantic import ValidationError

from mcp_agentbus.redis.connection import close, connect, redact
from mcp_agentbus.redis.local import LOCAL_SCHEME, LocalBus, LocalBusError
from mcp_agentbus.settings import Settings


def fail(message: str) -> NoReturn:
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


async def _ping(url: str) -> None:
    client = connect(url)
    try:
        with anyio.fail_after(5):
            await client.ping()
    finally:
        await close(client)


def check_redis(settings: Settings) -> None:
    """Exit with a clear message (what URL, what to do) when Redis cannot be reached."""
    try:
        anyio.run(_ping, settings.redis_url)
    except Exception as exc:  # any failure here means the same thing to the user
        why = str(exc).rstrip(".") or type(exc).__name__
        fail(
            f"cannot reach Redis at {redact(settings.redis_url)} ({why}).\n"
            "  Start a Redis server (for example `redis-server`), point AGENTBUS_REDIS_URL or --redis-url\n"
            "  at a running one, or use --redis-url memory:// for an embedded bus inside this one process."
        )


def use_local_bus(settings: Settings) -> Settings:
    """With ``local://``, the settings for the user's local bus (started if need be): its socket URL."""
    if not settings.redis_url.startswith(LOCAL_SCHEME):
        return settings
    local = LocalBus.from_url(settings.redis_url)
    try:
        url, started = local.ensure()
    except LocalBusError as exc:
        fail(str(exc))
    if started:
        click.echo(
            f"agentbus: started the local bus in {local.directory} (stop: agentbus local stop)", err=True
        )
    return settings.model_copy(update={"redis_url": url})
