"""The stdio server process and its log."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from mcp import Client
from mcp.types import CallToolResult, TextContent


def text_of(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def ok(client: Client, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await client.call_tool(tool, args or {})
    assert result.is_error is not True, text_of(result)
    assert result.structured_content is not None
    assert text_of(result).strip() and "Traceback" not in text_of(result)
    return cast("dict[str, Any]", result.structured_content)


def assert_clean_log(log: Path) -> None:
    text = log.read_text()
    assert "Traceback" not in text, text
    assert "Error executing tool" not in text, text
