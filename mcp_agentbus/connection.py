"""Redis clients from a URL, and the translation of connection failures into `BackendUnavailable`.

| URL | client |
|---|---|
| ``redis://[user:pass@]host:port/db``, ``rediss://…`` (TLS), ``unix:///path.sock`` | one server |
| ``redis+sentinel://[user:pass@]host:port[,host:port…]/service[/db]`` | the master Sentinel names |
| ``redis+cluster://[user:pass@]host:port[,host:port…]`` | Redis Cluster from any seed nodes |
| ``local://[/dir]`` | the user's managed local redis-server (see `mcp_agentbus.local`), started if need be |
| ``memory://[name]`` | an embedded store inside this one process |

The ``+sentinel`` and ``+cluster`` schemes also come as ``rediss+…`` for TLS. A password in a Sentinel
URL is the master's; sentinels that need their own pass ``?sentinel_password=…``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
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
from mcp_agentbus.local import LOCAL_SCHEME, LocalBus

Redis = aioredis.Redis | RedisCluster

SCHEMES = (
    "redis://",
    "rediss://",
    "unix://",
    "redis+sentinel://",
    "rediss+sentinel://",
    "redis+cluster://",
    "rediss+cluster://",
    "local://",
    "memory://",
)

# memory:// stores live as long as the process; one per name so tests can stay apart.
_memory_servers: dict[str, Any] = {}

# Connections one process keeps to a server. Past this many commands in flight at once, a command waits
# for a free connection (up to the socket timeout) instead of failing, as redis-py's default pool would.
MAX_CONNECTIONS = 200
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, BusyLoadingError, ReadOnlyError, OSError)


def connect(url: str) -> Redis:
    """A client for `url`; ``memory://[name]`` is an embedded store shared within this process."""
    if url.startswith(LOCAL_SCHEME):
        url, _ = LocalBus.from_url(url).ensure()
    if url.startswith("memory://"):
        import fakeredis  # imported lazily: only the embedded store needs it

        name = url.removeprefix("memory://")
        server = _memory_servers.setdefault(name, fakeredis.FakeServer())
        client: Redis = fakeredis.FakeAsyncRedis(
            server=server,
            decode_responses=True,
            connection_pool_class=aioredis.BlockingConnectionPool,
            max_connections=MAX_CONNECTIONS,
        )
        return client
    parts = urlsplit(url)
    if parts.scheme.endswith("+cluster"):
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in _seeds(parts.netloc, 6379)],
            username=_unquoted(parts.username),
            password=_unquoted(parts.password),
            ssl=parts.scheme.startswith("rediss"),
            **_options(),
        )
    if parts.scheme.endswith("+sentinel"):
        service, _, db = parts.path.strip("/").partition("/")
        if not service:
            raise ValueError(f"{redact(url)}: name the master after the hosts, as …/mymaster")
        sentinel_password = parse_qs(parts.query).get("sentinel_password", [None])[0]
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            _seeds(parts.netloc, 26379),
            sentinel_kwargs={"password": sentinel_password},
            username=_unquoted(parts.username),
            password=_unquoted(parts.password),
            ssl=parts.scheme.startswith("rediss"),
            db=int(db or 0),
            max_connections=MAX_CONNECTIONS,
            **_options(),
        )
        master: Redis = sentinel.master_for(service)
        return master
    options = _options()
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=options["socket_timeout"], **options
    )
    return aioredis.Redis.from_pool(pool)


def _options() -> dict[str, Any]:
    # A short, bounded retry rides out a blip (or a failover); past it a call fails with backend_unavailable.
    return {
        "decode_responses": True,
        "socket_connect_timeout": 2,
        "socket_timeout": 10,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": 30,
    }


def _seeds(netloc: str, default_port: int) -> list[tuple[str, int]]:
    """``host:port,host:port`` (after any credentials) as pairs."""
    hosts = netloc.rpartition("@")[2]
    pairs = []
    for seed in hosts.split(","):
        host, _, port = seed.rpartition(":") if seed.rpartition(":")[2].isdigit() else (seed, "", "")
        pairs.append((host.strip("[]") or "localhost", int(port or default_port)))
    return pairs


def _unquoted(part: str | None) -> str | None:
    return None if part is None else unquote(part)


def redact(url: str) -> str:
    """The URL with any password (in the credentials or as ``sentinel_password``) hidden, for messages."""
    parts = urlsplit(url)
    if parts.password is None and "sentinel_password=" not in parts.query:
        return url  # unchanged (urlunsplit would also turn unix:///path into unix:/path)
    if parts.password is not None:
        hosts = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{hosts}")
    query = re.sub(r"(sentinel_password=)[^&]*", r"\1***", parts.query)
    return urlunsplit(parts._replace(query=query))


async def close(redis: Redis) -> None:
    """Close a client from `connect`, with the connections to the sentinels that found its master."""
    await redis.aclose()
    pool = getattr(redis, "connection_pool", None)
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()


@contextmanager
def backend(url: str) -> Iterator[None]:
    """Turn a lost connection to Redis into `BackendUnavailable`."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise BackendUnavailable(f"Redis at {redact(url)} is unavailable: {exc}") from exc
