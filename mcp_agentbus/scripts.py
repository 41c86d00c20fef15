"""The Lua scripts, shipped as package data (``lua/*.lua``) and registered once per client.

A script may pull shared code in with a ``--@include name.lua`` line (from ``lua/include``); it is
expanded here, so Redis sees one self-contained script. redis-py's `Script` handles EVALSHA with the
NOSCRIPT fallback.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from mcp_agentbus.connection import Redis

_INCLUDE = "--@include "

_LUA = resources.files("mcp_agentbus") / "lua"
SCRIPT_NAMES = tuple(sorted(p.name.removesuffix(".lua") for p in _LUA.iterdir() if p.name.endswith(".lua")))


@cache
def source(name: str) -> str:
    """The full text of script `name`, includes expanded."""
    lines = []
    for line in (_LUA / f"{name}.lua").read_text().splitlines():
        if line.startswith(_INCLUDE):
            lines.append((_LUA / "include" / line.removeprefix(_INCLUDE).strip()).read_text())
        else:
            lines.append(line)
    return "\n".join(lines)


class Scripts:
    """The registered scripts of one Redis client, called by name."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(source(name)) for name in SCRIPT_NAMES
        }

    async def __call__(self, name: str, keys: tuple[str, ...], args: list[Any]) -> Any:
        return await self._scripts[name](keys=keys, args=args)

    async def pipelined(self, keys: tuple[str, ...], *calls: tuple[str, list[Any]]) -> list[Any]:
        """Run several scripts in order in one round trip; raises the first error among the replies.
        A script Redis does not know yet is loaded and run again, with every call after it."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for name, args in calls:
                pipe.evalsha(self._scripts[name].sha, len(keys), *keys, *args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        first_missing = next((i for i, r in enumerate(replies) if isinstance(r, NoScriptError)), None)
        if first_missing is not None:
            for i in range(first_missing, len(calls)):
                name, args = calls[i]
                replies[i] = await self(name, keys, args)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies
