"""`agentbus doctor`: is the Redis this configuration would use fit for a bus? Each check says what it
saw and, when it is not fine, what to do."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from mcp_agentbus.redis.connection import Redis, close, connect, redact
from mcp_agentbus.redis.local import LOCAL_SCHEME, LocalBus, find_server, no_server_message
from mcp_agentbus.redis.store import Store
from mcp_agentbus.settings import Settings

Status = Literal["ok", "warn", "fail"]

MIN_VERSION = (6, 2)  # XTRIM MINID and ZMSCORE came in 6.2
PINGS = 20
SLOW_MS = 5.0  # a tool call costs about two round trips; past this every call feels it
TIMEOUT = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


async def diagnose(settings: Settings) -> list[Check]:
    """Every check, in order; the later ones only when Redis answers at all."""
    checks = []
    if settings.redis_url.startswith(LOCAL_SCHEME):
        local = LocalBus.from_url(settings.redis_url)
        # Doctor only looks: starting the bus is `serve`'s (or `agentbus local start`'s) business.
        socket_url = await anyio.to_thread.run_sync(local.join)
        if socket_url is None:
            return [_not_running(local)]
        checks.append(
            Check("local bus", "ok", f"running: {local.directory} (shared by your agentbus processes)")
        )
        settings = settings.model_copy(update={"redis_url": socket_url})
    url = redact(settings.redis_url)
    if settings.redis_url.startswith("memory://"):
        return [
            Check(
                "backend",
                "warn",
                "memory:// is an embedded store inside one process: other processes get a bus of their own",
                "Set AGENTBUS_REDIS_URL to a Redis (e.g. redis://127.0.0.1:6379/0) to share one bus.",
            )
        ]
    redis = connect(settings.redis_url)
    try:
        try:
            with anyio.fail_after(TIMEOUT):
                await redis.ping()
        except Exception as exc:  # any failure means the same here: it cannot be used
            return [
                *checks,
                Check(
                    "reachable",
                    "fail",
                    f"{url}: {exc or type(exc).__name__}",
                    "Start redis-server, or fix AGENTBUS_REDIS_URL (host, port, password, TLS scheme).",
                ),
            ]
        checks.append(Check("reachable", "ok", url))
        info = await _info(redis)
        checks.append(_version(info))
        checks.append(await _eviction(redis))
        checks.append(await _persistence(redis, info))
        checks.append(await _scripts(redis, settings))
        checks.append(await _latency(redis))
        return checks
    finally:
        await close(redis)


def _not_running(local: LocalBus) -> Check:
    if find_server() is None:
        return Check("local bus", "fail", f"not running ({local.directory})", no_server_message())
    return Check(
        "local bus",
        "warn",
        f"not running ({local.directory}): agentbus serve starts it when it first needs it",
        "`agentbus local start` starts it now; run `agentbus doctor` again to check it.",
    )


async def _info(redis: Redis) -> dict[str, Any]:
    info: dict[str, Any] = await redis.info()
    # A cluster client answers per node ({"host:port": {...}}); any one node speaks for the version.
    if "redis_version" not in info and info and all(isinstance(v, dict) for v in info.values()):
        info = next(iter(info.values()))
    return info


def _version(info: dict[str, Any]) -> Check:
    version = str(info.get("redis_version", "unknown"))
    try:
        parts = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        parts = (0, 0)
    if parts < MIN_VERSION:
        return Check(
            "version", "fail", f"Redis {version}", "agentbus needs Redis 6.2 or later: upgrade the server."
        )
    return Check("version", "ok", f"Redis {version}")


async def _eviction(redis: Redis) -> Check:
    try:
        reply: Any = await redis.config_get("maxmemory-policy")
    except Exception as exc:  # managed services often refuse CONFIG
        return Check(
            "maxmemory-policy",
            "warn",
            f"could not read it ({exc})",
            "Check in your provider's settings that maxmemory-policy is noeviction.",
        )
    policy = _first_value(reply, "maxmemory-policy")
    if policy != "noeviction":
        return Check(
            "maxmemory-policy",
            "warn",
            f"{policy}: when memory runs out Redis may silently drop tasks, leases or locks",
            "Set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, and in "
            "redis.conf or your provider's parameters); a full Redis then refuses writes instead.",
        )
    return Check("maxmemory-policy", "ok", "noeviction")


def _first_value(reply: Any, key: str) -> str:
    """CONFIG GET's value, whether one node answered ({key: v}) or several ({node: {key: v}})."""
    if isinstance(reply, dict) and key in reply:
        return str(reply[key])
    if isinstance(reply, dict) and reply:
        return _first_value(next(iter(reply.values())), key)
    return "unknown"


async def _persistence(redis: Redis, info: dict[str, Any]) -> Check:
    if str(info.get("aof_enabled", "0")) == "1":
        return Check("persistence", "ok", "AOF on: acknowledged work survives a restart")
    try:
        schedule = _first_value(await redis.config_get("save"), "save")
    except Exception:  # managed services often refuse CONFIG
        schedule = "unknown"
    if schedule == "":
        detail = "none: a restart loses every task, message and lock"
    elif schedule == "unknown":
        detail = "AOF is off (the snapshot schedule could not be read)"
    else:
        detail = f"snapshots only (save {schedule}): a restart loses what changed since the last one"
    return Check(
        "persistence",
        "warn",
        detail,
        "Turn AOF on (appendonly yes, appendfsync everysec) if tasks and messages must survive a restart.",
    )


async def _scripts(redis: Redis, settings: Settings) -> Check:
    try:
        with anyio.fail_after(TIMEOUT):
            now_ms = await Store(redis, settings).now_ms()
    except Exception as exc:  # a refused EVALSHA/SCRIPT LOAD looks different on every service
        return Check(
            "scripts",
            "fail",
            f"a Lua script could not run: {exc or type(exc).__name__}",
            "agentbus needs EVALSHA and SCRIPT LOAD: allow them for this user (ACL +@scripting).",
        )
    skew_ms = now_ms - time.time() * 1000
    return Check("scripts", "ok", f"loaded and ran (Redis clock {skew_ms:+.0f} ms from this machine's)")


async def _latency(redis: Redis) -> Check:
    samples = []
    for _ in range(PINGS):
        started = time.perf_counter()
        await redis.ping()
        samples.append((time.perf_counter() - started) * 1000)
    p50, worst = statistics.median(samples), max(samples)
    detail = f"round trip p50 {p50:.2f} ms, max {worst:.2f} ms over {PINGS} PINGs"
    if p50 > SLOW_MS:
        return Check(
            "latency",
            "warn",
            detail,
            "Each tool call makes one or two round trips: run agentbus close to Redis (same host or zone).",
        )
    return Check("latency", "ok", detail)
