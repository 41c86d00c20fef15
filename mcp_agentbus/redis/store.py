"""One namespace on one Redis: runs the scripts and turns their refusals into errors."""

from __future__ import annotations

import copy
import re
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from mcp_agentbus.context import NOBODY, Caller
from mcp_agentbus.errors import (
    AgentBusError,
    InboxFull,
    InvalidArgument,
    LeaseLost,
    NotFound,
    NotLockOwner,
    PayloadTooLarge,
    WrongState,
)
from mcp_agentbus.redis.connection import Redis, backend
from mcp_agentbus.redis.keys import Keys
from mcp_agentbus.redis.replies import CLOCK
from mcp_agentbus.redis.scripts import BOUNDS, Script, Scripts
from mcp_agentbus.settings import Settings

R = TypeVar("R")
Arg = str | int | float  # what a script's ARGV takes

# How scripts refuse a call; mirrored by REFUSED in lua/include/notices.lua.
_REFUSALS: dict[str, type[AgentBusError]] = {
    "not_found": NotFound,
    "wrong_state": WrongState,
    "lease_lost": LeaseLost,
    "invalid_argument": InvalidArgument,
    "not_lock_owner": NotLockOwner,
    "inbox_full": InboxFull,
    "payload_too_large": PayloadTooLarge,
}


def common_argv(settings: Settings, owner: str = "") -> list[Any]:
    """What every script's ARGV starts with: the bounds and, as the last item of their comma list, the
    owner of the call (context.py; '' = the agent it acts as); then the retention of finished records (ms)."""
    return [f"{bounds_csv(settings)},{owner}", settings.retention_seconds * 1000]


def bounds_csv(settings: Settings) -> str:
    """The namespace's bounds (scripts.BOUNDS) as the comma list ARGV[1] starts with."""
    return ",".join(str(getattr(settings, name)) for name in BOUNDS)


@dataclass
class Store:
    """One namespace on one Redis: its keys, its scripts, and the bounds every script gets."""

    redis: Redis
    settings: Settings
    caller: Caller = NOBODY  # who the scripts run for: see `acting`
    keys: Keys = field(init=False)
    scripts: Scripts = field(init=False)
    # Made once, not per call (the settings are frozen): the bounds of common_argv and the Redis guard.
    _bounds: str = field(init=False)
    _backend: backend = field(init=False)

    def __post_init__(self) -> None:
        self.keys = Keys(self.settings.namespace)
        self.scripts = Scripts(self.redis)
        self._bounds = bounds_csv(self.settings)
        self._backend = backend(self.settings.redis_url, self.settings.redis_timeout_seconds)

    def acting(self, caller: Caller) -> Store:
        """This store for one call: its scripts run for `caller` — they renew its agent's presence and
        bring that agent's notices into its watch, and what they create is charged to its owner."""
        view = copy.copy(self)  # the keys and the registered scripts are shared
        view.caller = caller
        return view

    async def run(self, script: Script[R], *args: Arg) -> R:
        """Run `script` with the namespace's key layout and read its typed reply (replies.py); a refusal
        {code, message[, hint]} raises. The scripts run for this store's caller (`acting`)."""
        watch = self.caller.watch
        caller = "" if watch is None else f"{watch.agent},{watch.stay_ms}"
        bounds = f"{self._bounds},{self.caller.owner}"  # as common_argv
        argv = [bounds, self.settings.retention_seconds * 1000, caller, *args]
        with self._backend:
            reply: list[Any] = await self.scripts(script.name, self.keys.script_keys, argv)
        if watch is not None:
            watch.add(reply.pop())
        refusal = _REFUSALS.get(reply[0])
        if refusal is not None:
            raise refusal(reply[1], hint=reply[2] if len(reply) > 2 else None)
        return script.read(reply)

    async def run_or_undo(self, script: Script[R], *args: Arg, undo: Callable[[R], Awaitable[None]]) -> R:
        """Run `script` to its end even if the caller is cancelled meanwhile (a client that disconnected or
        timed out); if it was, `undo` what the script did before the cancellation goes on, so no grant
        (a lease, a lock, messages marked read) is kept for a caller that never hears of it."""
        with anyio.CancelScope(shield=True):
            reply = await self.run(script, *args)
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await undo(reply)
            raise
        return reply

    async def now_ms(self) -> int:
        """The Redis clock, from the namespace's own server (which, on a Cluster, is not just any node)."""
        return await self.run(CLOCK)

    def backend(self) -> AbstractContextManager[None]:
        """Context manager for direct reads: Redis unreachable, hung or refusing is `BackendUnavailable`."""
        return self._backend


def require(value: str, pattern: re.Pattern[str], what: str) -> str:
    """Refuse an identifier that does not match its format, before it is used in a key."""
    if not pattern.fullmatch(value):
        raise InvalidArgument(f"{what} {value!r} is not valid (expected {pattern.pattern})")
    return value
