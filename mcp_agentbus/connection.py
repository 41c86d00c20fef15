"""Redis clients from a URL, and the translation of connection failures into `BackendUnavailable`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    BusyLoadingError,
    ReadOnlyError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from mcp_agentbus.errors import BackendUnavailable

Redis = aioredis.Redis

# memory:// stores live as long as the process; one per name so tests can stay apart.
_memory_servers: dict[str, Any] = {}

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, BusyLoadingError, ReadOnlyError, OSError)


def connect(url: str) -> Redis:
    """A client for `url`; ``memory://[name]`` is an embedded store shared within this process."""
    if url.startswith("memory://"):
        import fakeredis  # imported lazily: only the embedded store needs it

        name = url.removeprefix("memory://")
        server = _memory_servers.setdefault(name, fakeredis.FakeServer())
        client: Redis = fakeredis.FakeAsyncRedis(server=server, decode_responses=True)
        return client
    # A short, bounded retry rides out a blip; past it the call fails with backend_unavailable.
    return aioredis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=10,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=30,
    )


def redact(url: str) -> str:
    """The URL with any password hidden, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def backend(url: str) -> Iterator[None]:
    """Turn a lost connection to Redis into `BackendUnavailable`."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise BackendUnavailable(f"Redis at {redact(url)} is unavailable: {exc}") from exc
