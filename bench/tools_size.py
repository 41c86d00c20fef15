"""Size of the ``tools/list`` answer, in tokens, per tool profile and per tool.

    .venv/bin/python bench/tools_size.py [--json]

Every connected agent pays for the tool list in its context, so it has a budget (issue 5, raised by
issue 16 for its new tools): at most 3,500 tokens for every tool (profile ``all``) and 1,800 for the
``worker`` profile. A token is
counted as 4 bytes of the answer's JSON, ``{"tools": [...]}`` with every field the SDK sends for each
tool (``None`` left out; ``json.dumps`` defaults): the usual rough measure, deterministic, and
independent of any one tokenizer. The server is built in-process on ``memory://`` and listed through
the real ``mcp.Client``, as an agent would see it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from mcp import Client
from mcp.types import Tool

from mcp_agentbus.server.app import build_server
from mcp_agentbus.settings import Settings

PROFILES = ("all", "worker", "coordinator")
BUDGET = {"all": 3_500, "worker": 1_800}  # tokens; a profile not named here has none of its own


def as_sent(tool: Tool) -> dict[str, Any]:
    """A listed tool as the SDK puts it on the wire."""
    return tool.model_dump(mode="json", by_alias=True, exclude_none=True)


def tool_tokens(tool: Tool) -> int:
    """One listed tool's size: the bytes of its JSON, over 4."""
    return len(json.dumps(as_sent(tool))) // 4


async def listed_tools(profile: str) -> list[Tool]:
    """What ``tools/list`` answers on a server with this tool profile."""
    settings = Settings(redis_url="memory://", namespace="tools-size", agent=None, tools=profile)
    async with Client(build_server(settings)) as client:
        return list((await client.list_tools()).tools)


def total_tokens(tools: list[Tool]) -> int:
    """The whole answer's size: the bytes of ``{"tools": [...]}`` as JSON, over 4."""
    return len(json.dumps({"tools": [as_sent(t) for t in tools]})) // 4


async def measure() -> dict[str, Any]:
    """Tokens per profile, and per tool (from the ``all`` profile)."""
    lists = {profile: await listed_tools(profile) for profile in PROFILES}
    return {
        "profiles": {p: total_tokens(tools) for p, tools in lists.items()},
        "tools": {t.name: tool_tokens(t) for t in lists["all"]},
    }


def report(sizes: dict[str, Any]) -> str:
    lines = ["profile       tokens  budget"]
    for profile, tokens in sizes["profiles"].items():
        budget = BUDGET.get(profile)
        verdict = "" if budget is None else f"{budget:>6,}  {'ok' if tokens <= budget else 'OVER'}"
        lines.append(f"{profile:<12}{tokens:>8,}  {verdict}".rstrip())
    lines += ["", "tool             tokens"]
    lines += [f"{name:<16}{tokens:>7,}" for name, tokens in sizes["tools"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    sizes = asyncio.run(measure())
    print(json.dumps(sizes, indent=2) if args.json else report(sizes))


if __name__ == "__main__":
    main()
