"""The Lua scripts, shipped as package data (``lua/*.lua``) and registered once per client.

A script pulls shared code in with ``--@include name.lua`` lines (from ``lua/include``), expanded
here so Redis sees one self-contained script. The script's own code becomes a function whose reply
gets the caller's notices appended (``include/notices.lua``), so every call can carry them without
another round trip. redis-py's `Script` handles EVALSHA with the NOSCRIPT fallback.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript

from mcp_agentbus.redis.connection import Redis

_INCLUDE = "--@include "

_LUA = resources.files("mcp_agentbus.redis") / "lua"
SCRIPT_NAMES = tuple(sorted(p.name.removesuffix(".lua") for p in _LUA.iterdir() if p.name.endswith(".lua")))


_NOTICES_NEED = ("inbox.lua", "notices.lua")  # after the keys.lua and common.lua every script includes


@cache
def source(name: str) -> str:
    """The full text of script `name`: its header comment, its includes, then its code as `main`,
    whose reply gets the notices."""
    header: list[str] = []
    includes: list[str] = []
    body: list[str] = []
    for line in (_LUA / f"{name}.lua").read_text().splitlines():
        if line.startswith(_INCLUDE):
            includes.append(line.removeprefix(_INCLUDE).strip())
        elif includes:
            body.append(line)
        else:
            header.append(line)
    includes += [needed for needed in _NOTICES_NEED if needed not in includes]
    shared = [(_LUA / "include" / include).read_text() for include in includes]
    return "\n".join([*header, *shared, "local function main()", *body, "end", "return with_notices(main())"])


class Scripts:
    """The registered scripts of one Redis client, called by name."""

    def __init__(self, redis: Redis) -> None:
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(source(name)) for name in SCRIPT_NAMES
        }

    async def __call__(self, name: str, keys: tuple[str, ...], args: list[Any]) -> Any:
        return await self._scripts[name](keys=keys, args=args)
