"""Locks: exclusive, expiring, fenced, hierarchical for path-like names, with fair server-side waits."""

from __future__ import annotations

import math
import secrets
import unicodedata
from typing import cast

import anyio

from mcp_agentbus.core.models import HeldLock, LockResult, LocksView, ReleaseResult, iso
from mcp_agentbus.core.waiting import ProgressCallback, Wait
from mcp_agentbus.core.wakeups import Wakeups, lock_topics, news_for
from mcp_agentbus.errors import InvalidArgument
from mcp_agentbus.ids import AGENT_RE, MAX_HELD_LOCKS, RESOURCE_RE, seconds
from mcp_agentbus.redis.replies import (
    ACQUIRE_LOCK,
    LEAVE_LOCK_QUEUE,
    RELEASE_LOCK,
    REVOKE_LOCK,
    Granted,
    Held,
    LockRevoked,
    Queued,
)
from mcp_agentbus.redis.store import Store, require

MAX_LISTED_LOCKS = 1000
QUEUE_SLACK = 2.0  # seconds a waiter keeps its place beyond its wait, to cover a retry in flight


def canonical(resource: str, what: str = "resource") -> str:
    """The one name of a resource, so that ``x``, ``./x`` and ``src/../x`` are one lock: in Unicode NFC
    (``café`` typed precomposed or decomposed, as macOS lists file names, is one name), a path-like name
    (one with '/') loses ``.`` segments and repeated slashes and has ``..`` resolved; a leading '/' and a
    trailing '/' (a directory) are kept. A path that climbs above where it starts is refused. Shared-state
    keys are named the same way (`what` names the argument in errors)."""
    resource = require(unicodedata.normalize("NFC", resource), RESOURCE_RE, what)  # NFC may lengthen it
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
    """Acquire, release, revoke and list locks on resources (file paths lock what lies below a directory)."""

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
        wait = Wait(self._store, wait_seconds, resource, on_progress)
        ttl_ms = math.ceil(ttl_seconds * 1000)
        token = secrets.token_urlsafe(12)
        queued = False
        stopped: str | None = None  # why the wait ended early, once it has
        try:
            while True:
                async with self._wakeups.expect(
                    (*lock_topics(resource), *news_for(agent)),
                    waiting=wait.remaining() > 0 and stopped is None,
                ) as waiter:
                    remaining = 0.0 if stopped is not None else wait.remaining()
                    reply = await self._try(agent, resource, ttl_ms, token, remaining)
                    if isinstance(reply, Granted) or remaining <= 0:
                        told = [stopped] if stopped is not None and not isinstance(reply, Granted) else []
                        return _result(resource, reply, wait.notices + told)
                    queued = True
                    # Come back at the holder's expiry even if no hint arrives.
                    expires_in = (
                        (reply.expires_at_ms - reply.now_ms) / 1000 if isinstance(reply, Held) else math.inf
                    )
                    await wait.sleep(waiter.event, at_most=max(0.0, expires_in))
                    stopped = waiter.stopped_by_news(agent)  # one last try, then say so
        finally:
            if queued:
                with anyio.CancelScope(shield=True):
                    await self._store.run(LEAVE_LOCK_QUEUE, agent, resource)

    async def _try(
        self, agent: str, resource: str, ttl_ms: int, token: str, remaining: float
    ) -> Granted | Held | Queued:
        """One attempt, never half-done: a grant that races the caller's cancellation is released, and a
        place in the queue it took is left."""
        queue_ms = math.ceil((max(remaining, 0) + QUEUE_SLACK) * 1000)

        async def undo(reply: Granted | Held | Queued) -> None:
            if isinstance(reply, Granted):
                if not reply.extended:  # a lock held before this call stays held
                    await self._store.run(RELEASE_LOCK, agent, resource, token)
            elif remaining > 0:  # the script queued us
                await self._store.run(LEAVE_LOCK_QUEUE, agent, resource)

        return await self._store.run_or_undo(
            ACQUIRE_LOCK,
            agent,
            resource,
            ttl_ms,
            token,
            "1" if remaining > 0 else "0",
            queue_ms,
            MAX_HELD_LOCKS,
            undo=undo,
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
        """Release the lock `lock_token` holds; one already expired or released says so (not an error)."""
        require(agent, AGENT_RE, "agent id")
        resource = canonical(resource)
        released = await self._store.run(RELEASE_LOCK, agent, resource, lock_token)
        return ReleaseResult(released=released.released, resource=resource, reason=released.reason or None)

    async def revoke(self, resource: str, by: str) -> LockRevoked:
        """Take the lock on `resource` from its holder whatever its token (for a person freeing a stuck
        lock): the first waiter takes it next, with a higher fencing token; the holder's next call is
        told, its waits end, and its late release_lock says it was revoked by `by`. Nothing held is
        `NotFound`."""
        require(by, AGENT_RE, "agent id")
        return await self._store.run(REVOKE_LOCK, by, canonical(resource))


def _result(resource: str, reply: Granted | Held | Queued, notices: list[str]) -> LockResult:
    if isinstance(reply, Granted):
        return LockResult(
            acquired=True,
            resource=resource,
            lock_token=reply.lock_token,
            fencing_token=reply.fencing_token,
            expires_at=iso(reply.expires_at_ms),
            extended=reply.extended,
            notices=notices,
        )
    if isinstance(reply, Held):
        return LockResult(
            acquired=False,
            resource=resource,
            expires_at=iso(reply.expires_at_ms),
            holder=reply.holder,
            conflicting_resource=reply.conflicting_resource,
            waiters=reply.waiters,
            notices=notices,
        )
    return LockResult(
        acquired=False,
        resource=resource,
        holder=reply.first_waiter,
        waiters=reply.waiters,
        notices=[*notices, f"{resource} is free, but {reply.first_waiter} has been waiting for it longer."],
    )
