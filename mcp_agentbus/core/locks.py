"""Locks: exclusive, expiring, fenced, hierarchical for path-like names, with fair server-side waits."""

from __future__ import annotations

import math
import secrets
from typing import Any, cast

import anyio
import anyio.lowlevel

from mcp_agentbus.core.models import HeldLock, LockResult, LocksView, ReleaseResult, iso
from mcp_agentbus.core.waiting import ProgressCallback, Wait
from mcp_agentbus.core.wakeups import Wakeups
from mcp_agentbus.errors import InvalidArgument
from mcp_agentbus.ids import AGENT_RE, MAX_HELD_LOCKS, RESOURCE_RE, seconds
from mcp_agentbus.redis.store import Store, require

MAX_LISTED_LOCKS = 1000
QUEUE_SLACK = 2.0  # seconds a waiter keeps its place beyond its wait, to cover a retry in flight


def canonical(resource: str, what: str = "resource") -> str:
    """The one name of a resource, so that ``x``, ``./x`` and ``src/../x`` are one lock: a path-like name
    (one with '/') loses ``.`` segments and repeated slashes and has ``..`` resolved; a leading '/' and a
    trailing '/' (a directory) are kept. A path that climbs above where it starts is refused. Shared-state
    keys are named the same way (`what` names the argument in errors)."""
    require(resource, RESOURCE_RE, what)
    if "/" not in resource and resource not in (".", ".."):
        return resource
    parts: list[str] = []
    for part in resource.split("/"):
        if part == "..":
            if not parts:
                raise InvalidArgument(
                    f"{what} {resource!r} climbs above where it starts",
                    hint="Name paths from the project root, without '..' (e.g. src/app.py or src/).",
                )
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    root = "/" if resource.startswith("/") else ""
    if not parts:
        if root:
            return root
        raise InvalidArgument(
            f"{what} {resource!r} names no file or directory",
            hint="Name a file (src/app.py), a directory (src/) or a plain name (plan).",
        )
    directory = "/" if resource.endswith(("/", "/.", "/..")) else ""
    return root + "/".join(parts) + directory


class Locks:
    def __init__(self, store: Store, wakeups: Wakeups) -> None:
        self._store = store
        self._wakeups = wakeups

    async def acquire(
        self,
        agent: str,
        resource: str,
        *,
        ttl_seconds: float = 60,
        wait_seconds: float = 0,
        on_progress: ProgressCallback | None = None,
    ) -> LockResult:
        """Take the lock, or (with `wait_seconds`) wait on the server until it is released or expires.
        Re-acquiring a lock you hold extends it and keeps its tokens."""
        require(agent, AGENT_RE, "agent id")
        resource = canonical(resource)
        seconds(ttl_seconds, "ttl_seconds")
        wait = Wait(wait_seconds, self._store.settings.max_wait_seconds, resource, on_progress)
        ttl_ms = math.ceil(ttl_seconds * 1000)
        token = secrets.token_urlsafe(12)
        queued = False
        try:
            while True:
                with self._wakeups.expect(("lock",)) as woken:
                    remaining = wait.remaining()
                    reply = await self._try(agent, resource, ttl_ms, token, remaining)
                    if reply[0] == "ok" or remaining <= 0:
                        return self._result(resource, reply, wait.notices)
                    queued = True
                    # Come back at the holder's expiry even if no hint arrives.
                    expires_in = (int(reply[3]) - int(reply[5])) / 1000 if reply[0] == "held" else math.inf
                    await wait.sleep(woken, at_most=max(0.0, expires_in))
        finally:
            if queued:
                with anyio.CancelScope(shield=True):
                    await self._store.run("leave_lock_queue", agent, resource)

    async def _try(self, agent: str, resource: str, ttl_ms: int, token: str, remaining: float) -> list[Any]:
        """One attempt, never half-done: a grant that races the caller's cancellation is released."""
        queue_ms = math.ceil((max(remaining, 0) + QUEUE_SLACK) * 1000)
        with anyio.CancelScope(shield=True):
            reply = await self._store.run(
                "acquire_lock",
                agent,
                resource,
                ttl_ms,
                token,
                "1" if remaining > 0 else "0",
                queue_ms,
                MAX_HELD_LOCKS,
            )
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                if reply[0] == "ok" and reply[4] == "0":
                    await self._store.run("release_lock", agent, resource, token)
                elif reply[0] != "ok" and remaining > 0:  # the script queued us: leave the queue
                    await self._store.run("leave_lock_queue", agent, resource)
            raise
        return reply

    @staticmethod
    def _result(resource: str, reply: list[Any], notices: list[str]) -> LockResult:
        if reply[0] == "ok":
            _, token, fence, expires, extended = reply
            return LockResult(
                acquired=True,
                resource=resource,
                lock_token=token,
                fencing_token=int(fence),
                expires_at=iso(expires),
                extended=extended == "1",
                notices=notices,
            )
        if reply[0] == "held":
            _, conflict, holder, expires, waiters, _now = reply
            return LockResult(
                acquired=False,
                resource=resource,
                expires_at=iso(expires),
                holder=holder,
                conflicting_resource=conflict,
                waiters=int(waiters),
                notices=notices,
            )
        _, first, waiters, _now = reply
        return LockResult(
            acquired=False,
            resource=resource,
            holder=first,
            waiters=int(waiters),
            notices=[*notices, f"{resource} is free, but {first} has been waiting for it longer."],
        )

    async def held(self, limit: int = MAX_LISTED_LOCKS) -> LocksView:
        """The locks held now, soonest to expire first."""
        keys, redis = self._store.keys, self._store.redis
        now_ms = await self._store.now_ms()
        with self._store.backend():
            held = cast(
                list[tuple[str, float]], await redis.zrange(keys.locks, 0, limit - 1, withscores=True)
            )
            live = [res for res, expires in held if expires > now_ms]
            async with redis.pipeline(transaction=False) as pipe:
                for res in live:
                    pipe.hmget(keys.lock(res), "owner", "fence", "acquired", "expires")
                    pipe.zcard(keys.lock_queue(res))
                replies = await pipe.execute()
        locks = [
            HeldLock(
                resource=res,
                holder=owner,
                fencing_token=int(fence),
                acquired_at=iso(acquired),
                expires_at=iso(expires),
                waiters=waiters,
            )
            for res, (owner, fence, acquired, expires), waiters in zip(
                live, replies[::2], replies[1::2], strict=True
            )
            if owner is not None  # released between the two reads
        ]
        return LocksView(locks=locks)

    async def release(self, agent: str, resource: str, lock_token: str) -> ReleaseResult:
        require(agent, AGENT_RE, "agent id")
        resource = canonical(resource)
        _, released, reason = await self._store.run("release_lock", agent, resource, lock_token)
        return ReleaseResult(released=released == "1", resource=resource, reason=reason or None)
