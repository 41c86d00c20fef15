"""A tool's reply: the whole result as structured content, and a text for models that read only text.

The text is a readable line, the notices, then only what the line does not say, picked by the tool:
each named part of the result as compact JSON on a line of its own (a list, one item a line), e.g.
``lease: {"lease_token":"…","fence":3,…}``. It is bounded like the result (MAX_REPLY_BYTES): parts past
the bound are named, not repeated, and the structured content still carries them. Hosts differ in what
they show the model (Claude Code shows the structured content), so each carries what an agent needs.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from mcp_agentbus.context import Watch
from mcp_agentbus.core import notices
from mcp_agentbus.core.models import Result
from mcp_agentbus.ids import MAX_REPLY_BYTES, REPLY_ROOM

Item = TypeVar("Item", bound=BaseModel)


def ok(result: Result, line: str, watch: Watch | None, **details: str) -> CallToolResult:
    """`result` as structured content, and as text: `line`, the notices (the result's own, then those
    `watch` gathered for the call's agent), then for each `label=path` of `details` the part of the
    result at `path` (dotted), labelled, unless empty. A part (or the rest of a list) that would pass
    the text's budget is counted instead of shown."""
    result.notices += notices.lines(watch)
    data = result.model_dump(mode="json")
    text = [line, *(f"Notice: {n}" for n in result.notices)]
    budget = MAX_REPLY_BYTES - _size("\n".join(text))
    for label, path in details.items():
        value = _at(data, path)
        left_out = 0
        for item in value if isinstance(value, list) else [value]:
            if item in (None, {}, []):
                continue
            if isinstance(item, dict):  # a null field says nothing a model needs
                item = {k: v for k, v in item.items() if v is not None}
            shown = f"{label}: {json.dumps(item, separators=(',', ':'), ensure_ascii=False)}"
            cost = _size(shown) + 1
            if left_out or cost > budget:
                left_out += 1
                continue
            text.append(shown)
            budget -= cost
        if left_out:
            text.append(
                f"({left_out} {label} part(s) too large for this text: the structured result has them.)"
            )
    return CallToolResult(content=[TextContent(type="text", text="\n".join(text))], structured_content=data)


def keep_fitting(items: list[Item], what: str, hint: str) -> tuple[list[Item], list[str]]:
    """The leading `items` that fit in one reply, and a notice saying how many did not (`what` names
    them, `hint` says how to see fewer)."""
    room = MAX_REPLY_BYTES - REPLY_ROOM
    for count, item in enumerate(items):
        room -= len(item.model_dump_json().encode()) + 1
        if room < 0:
            left = len(items) - count
            return items[:count], [f"{left} more {what} left out, too many for one reply: {hint}."]
    return items, []


def _at(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _size(text: str) -> int:
    """Bytes of `text` once JSON-escaped into the reply."""
    return len(json.dumps(text, ensure_ascii=False).encode())
