"""One namespace on one Redis: runs the scripts and turns their refusals into errors."""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from mcp_agentbus import context
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
from mcp_agentbus.redis.scripts import BOUNDS, Scripts
from mcp_agentbus.settings import Settings

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
    bounds = ",".join(str(getattr(settings, name)) for name in BOUNDS)
    return [f"{bounds},{owner}", settings.retention_seconds * 1000]


@dataclass
class Store:
    redis: Redis
    settings: Settings
    keys: Keys = field(init=False)
    scripts: Scripts = field(init=False)

    def __post_init__(self) -> None:
        self.keys = Keys(self.settings.namespace)
        self.scripts = Scripts(self.redis)

    async def run(self, script: str, *args: Any) -> list[Any]:
        """Run `script` with the namespace's key layout; a refusal {code, message[, hint]} raises.
        Inside `context.watching(agent)`, the reply also brings that agent's notices; inside
        `context.charging(owner)`, what it creates is charged to that owner's share."""
        watch = context.watched()
        notices_for = "" if watch is None else watch.agent
        common = common_argv(self.settings, context.owner())
        with self.backend():
            reply: list[Any] = await self.scripts(
                script, self.keys.script_keys, [*common, notices_for, *args]
            )
        if watch is not None:
            watch.add(reply.pop())
        refusal = _REFUSALS.get(reply[0])
        if refusal is not None:
            raise refusal(reply[1], hint=reply[2] if len(reply) > 2 else None)
        return reply

    async def now_ms(self) -> int:
        """The Redis clock, from the namespace's own server (which, on a Cluster, is not just any node)."""
        _, now = await self.run("clock")
        return int(now)

    def backend(self) -> AbstractContextManager[None]:
        """Context manager for direct reads: Redis unreachable, hung or refusing is `BackendUnavailable`."""
        return backend(self.settings.redis_url, self.settings.redis_timeout_seconds)


def require(value: str, pattern: re.Pattern[str], what: str) -> str:
    """Refuse an identifier that does not match its format, before it is used in a key."""
    if not pattern.fullmatch(value):
        raise InvalidArgument(f"{what} {value!r} is not valid (expected {pattern.pattern})")
    return value
