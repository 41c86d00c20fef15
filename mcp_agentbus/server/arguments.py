"""A tool call's arguments, checked by name and kind before the tool runs.

An argument name the tool does not have is refused, never ignored (a misspelt `wait_seconds` would
otherwise mean no wait). So is JSON's true or false where the tool takes a number: pydantic reads them
as 1 and 0, so `ttl_seconds: true` gave an agent a presence of one second.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcp.server.mcpserver.tools import Tool

from mcp_agentbus.errors import InvalidArgument, listed


def _takes_a_number(schema: dict[str, Any]) -> bool:
    kinds = {schema.get("type"), *(option.get("type") for option in schema.get("anyOf", ()))}
    return bool(kinds & {"integer", "number"})


class Arguments:
    """The argument names, and those that take a number, of each tool a server serves."""

    def __init__(self, tools: Iterable[Tool]) -> None:
        self.names: dict[str, frozenset[str]] = {}
        self._numbers: dict[str, frozenset[str]] = {}
        for tool in tools:
            properties: dict[str, Any] = tool.parameters.get("properties", {})
            self.names[tool.name] = frozenset(properties)
            self._numbers[tool.name] = frozenset(k for k, v in properties.items() if _takes_a_number(v))

    def refusal(self, tool: str, arguments: dict[str, Any]) -> InvalidArgument | None:
        """Why `arguments` are refused for `tool` (one the server serves) before it runs, if they are."""
        unknown = sorted(set(arguments) - self.names[tool])
        if unknown:
            return InvalidArgument(
                f"{tool} has no argument(s) {listed(unknown)}",
                hint=f"{tool} accepts: {', '.join(sorted(self.names[tool]))}.",
            )
        flags = sorted(k for k in self._numbers[tool] if isinstance(arguments.get(k), bool))
        if flags:
            return InvalidArgument(
                f"{tool} takes a number for {listed(flags)}, not true or false",
                hint="Pass a number (e.g. 60), or leave the argument out for its default.",
            )
        return None
