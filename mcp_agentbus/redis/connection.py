"""Redis clients from a URL, and the translation of connection failures into `BackendUnavailable`.

| URL | client |
|---|---|
| ``redis://[user:pass@]host:port/db``, ``rediss://…`` (TLS), ``unix:///path.sock`` | one server |
| ``redis+sentinel://[user:pass@]host:port[,host:port…]/service[/db]`` | the master Sentinel names |
| ``redis+cluster://[user:pass@]host:port[,host:port…]`` | Redis Cluster from any seed nodes |
| ``local://[/dir]`` | the user's managed local redis-server (`redis/local.py`), started if need be |
| ``memory://[name]`` | an embedded store inside this one process |

The ``+sentinel`` and ``+cluster`` schemes also come as ``rediss+…`` for TLS. A password in a Sentinel
URL is the master's; sentinels that need their own pass ``?sentinel_password=…``.
"""

from __future__ import annotations

import logging
import re
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    MaxConnectionsError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mcp_agentbus.errors import BackendUnavailable
from mcp_agentbus.outages import Outage
from mcp_agentbus.redis.local import LOCAL_SCHEME, LocalBus
from mcp_agentbus.settings import DEFAULT_TIMEOUT

logger = logging.getLogger(__name__)

Redis = aioredis.Redis | RedisCluster

# memory:// stores live as long as the process; one per name so tests can stay apart.
_memory_servers: dict[str, Any] = {}

# Connections one process keeps to a server. Past this many commands in flight at once, a command waits
# for a free connection (up to the socket timeout) instead of failing, as redis-py's default pool would.
MAX_CONNECTIONS = 200

_RETRY_SOON = "Nothing was changed. Retry in a few seconds."
_UNKNOWN = (
    "Whether this call took effect is unknown: check before repeating it (get_workflow, read_inbox with "
    "peek; a task claimed for you shows in heartbeat's leases_extended, and claim_task with its task_id "
    "gives you its lease), or repeat it with the same idempotency_key."
)
# How Redis says it refuses work for a while, by the first word of its error reply: what the caller
# is told (never the host or the raw reply, which go to the log) and what to do about it.
_REFUSING: dict[str, tuple[str, str]] = {
    "OOM": (
        "Redis is out of memory (maxmemory reached) and refuses every change",
        "Nothing was changed; reads still work. Changes resume when the operator frees memory or raises "
        "maxmemory: retry in a minute, and tell the operator if it lasts.",
    ),
    "BUSY": ("Redis is busy running a long script and answers nothing else", _RETRY_SOON),
    "LOADING": ("Redis is loading its data after a restart", _RETRY_SOON),
    "READONLY": ("Redis is a read-only replica right now (a failover may be under way)", _RETRY_SOON),
    "MASTERDOWN": ("the Redis replica has lost its master", _RETRY_SOON),
    "NOREPLICAS": ("Redis refuses changes: too few of its replicas are reachable", _RETRY_SOON),
    "CLUSTERDOWN": ("the Redis Cluster is down", _RETRY_SOON),
    "TRYAGAIN": ("the Redis Cluster is moving this namespace's keys", _RETRY_SOON),
    "NOSCRIPT": (
        "Redis keeps dropping agentbus's scripts (SCRIPT FLUSH, or restarts, under way)",
        _RETRY_SOON,
    ),
    "MISCONF": (
        "Redis refuses every change: it cannot save its data to disk",
        "Nothing was changed; reads still work. The operator must fix Redis's disk (see its log); retry "
        "later.",
    ),
}
# The refusals redis-py gives classes of their own (most specific first); the rest by the reply's first word.
_REFUSING_KINDS: tuple[tuple[type[Exception], str], ...] = (
    (OutOfMemoryError, "OOM"),
    (BusyLoadingError, "LOADING"),
    (ReadOnlyError, "READONLY"),
    (MasterDownError, "MASTERDOWN"),
    (ClusterDownError, "CLUSTERDOWN"),
    (TryAgainError, "TRYAGAIN"),
    (NoScriptError, "NOSCRIPT"),
)
# Before Redis 7 a command refused inside a script comes back wrapped ("Error running script (call to
# f_…): @user_script:12: @user_script: 12: -OOM command not allowed …"): the refusal is the word after '-'.
_IN_SCRIPT = re.compile(r"^Error running script .*?: -([A-Z]+) ")
_outages: dict[str, Outage] = {}  # by URL: failures of calls to that Redis, logged without repeating


def connect(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> Redis:
    """A client for `url`; ``memory://[name]`` is an embedded store shared within this process. A
    command that gets no answer within `timeout` seconds fails (it is not sent again: it may have run)."""
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
            **_options(timeout),
        )
    if parts.scheme.endswith("+sentinel"):
        service, _, db = parts.path.strip("/").partition("/")
        if not service:
            raise ValueError(f"{redact(url)}: name the master after the hosts, as …/mymaster")
        sentinel_password = parse_qs(parts.query).get("sentinel_password", [None])[0]
        sentinel = Sentinel(
            _seeds(parts.netloc, 26379),
            sentinel_kwargs={"password": sentinel_password},
            username=_unquoted(parts.username),
            password=_unquoted(parts.password),
            ssl=parts.scheme.startswith("rediss"),
            db=int(db or 0),
            max_connections=MAX_CONNECTIONS,
            **_options(timeout),
        )
        master: Redis = sentinel.master_for(service)
        return master
    options = _options(timeout)
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=options["socket_timeout"], **options
    )
    return aioredis.Redis.from_pool(pool)


async def subscriber(redis: Redis, channel: str) -> tuple[aioredis.Redis | None, PubSub, bool]:
    """A pub/sub connection for the wake-up channels that share `channel`'s hash slot: the client opened
    for it (to close after it; None when it is `redis`'s own), and whether to use shard channels. On a
    Redis Cluster it goes to the node serving the slot, with shard channels (SSUBSCRIBE) from Redis 7
    on, as the scripts' SPUBLISH (scripts.keys_lua); older clusters broadcast PUBLISH to every node."""
    if not isinstance(redis, RedisCluster):
        pool = redis.connection_pool
        if isinstance(pool, SentinelConnectionPool) or pool.connection_class.__module__.startswith(
            "fakeredis"
        ):
            return None, redis.pubsub(), False  # the master it finds, or the embedded store: as they come
        client = _pubsub_client(pool.connection_class, pool.connection_kwargs)
        return client, client.pubsub(), False
    await redis.initialize()  # the slot map, to find the node
    node = redis.get_node_from_key(channel)
    if node is None:
        raise RedisConnectionError(f"no Redis Cluster node serves the slot of {channel}")
    client = _pubsub_client(node.connection_class, node.connection_kwargs)
    try:
        version = str((await client.info("server"))["redis_version"])
    except BaseException:
        await client.aclose()
        raise
    return client, client.pubsub(), int(version.partition(".")[0]) >= 7


def _pubsub_client(connection_class: Any, kwargs: dict[str, Any]) -> aioredis.Redis:
    """A client of its own for a subscriber, whose connection never reconnects by itself: redis-py would,
    and subscribe again, from whichever of the subscriber's reading and writing tasks failed first, racing
    the other; the failure goes up instead (core/channels.py reconnects once and wakes every waiter)."""
    no_retry = {"retry": Retry(NoBackoff(), 0, supported_errors=()), "retry_on_error": []}
    pool = aioredis.ConnectionPool(connection_class=connection_class, **{**kwargs, **no_retry})
    return aioredis.Redis.from_pool(pool)


def lost_after_sending(error: BaseException) -> bool:
    """Whether `error` is a connection lost awaiting the reply: the command went out, and may have run."""
    lost = ("Connection closed by server", "Error while reading from")
    return isinstance(error, RedisConnectionError) and str(error).startswith(lost)


def _unsent(error: BaseException) -> bool:
    return not lost_after_sending(error)


def _options(timeout: float) -> dict[str, Any]:
    # A short, bounded retry rides out a connection that cannot be opened or written to (a restart, a
    # failover); past it a call fails with backend_unavailable. A command whose connection was lost after
    # it went out is not sent again, nor is one that timed out: it may have run (a task created twice, a
    # batch of messages marked read twice), and each try would add another `timeout` to the wait.
    return {
        "decode_responses": True,
        "socket_connect_timeout": min(2.0, timeout),
        "socket_timeout": timeout,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 3, (RedisConnectionError,), _unsent),
        "retry_on_error": [RedisConnectionError],
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


def unavailable(exc: BaseException, timeout: float | None = None) -> BackendUnavailable | None:
    """`exc` as the `BackendUnavailable` a caller is told, when it means Redis cannot serve right now."""
    if isinstance(exc, RedisTimeoutError | TimeoutError):
        within = "" if timeout is None else f" within {timeout:g} s"
        return BackendUnavailable(
            f"Redis did not answer{within}: it may be overloaded or paused", hint=_UNKNOWN
        )
    if lost_after_sending(exc):
        return BackendUnavailable("the connection to Redis was lost before it answered", hint=_UNKNOWN)
    if isinstance(exc, MaxConnectionsError):
        return BackendUnavailable(
            "this server has all its Redis connections busy", hint="Nothing was changed. Retry in a moment."
        )
    if isinstance(exc, ResponseError | BusyLoadingError):
        word = next((w for kind, w in _REFUSING_KINDS if isinstance(exc, kind)), None)
        if word is None:
            wrapped = _IN_SCRIPT.match(str(exc))
            word = wrapped.group(1) if wrapped else str(exc).partition(" ")[0]
        refusing = _REFUSING.get(word)
        return None if refusing is None else BackendUnavailable(refusing[0], hint=refusing[1])
    if isinstance(exc, RedisConnectionError | OSError):
        return BackendUnavailable("Redis is unreachable")
    return None


class backend:
    """Turn Redis being unreachable, hung or refusing work into `BackendUnavailable`; the details (host,
    Redis's own words) go to the log, once per outage rather than once per call. A class, not a
    generator: every script call enters one, and this costs a fifth of @contextmanager's."""

    def __init__(self, url: str, timeout: float | None = None) -> None:
        self._timeout = timeout
        outage = _outages.get(url)
        if outage is None:
            outage = _outages[url] = Outage(f"Redis at {redact(url)}", logger)
        self._outage = outage

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _: TracebackType | None
    ) -> None:
        if exc is None:
            self._outage.recovered()
            return
        error = unavailable(exc, self._timeout) if isinstance(exc, Exception) else None
        if error is not None:
            self._outage.failed(exc)
            raise error from exc
