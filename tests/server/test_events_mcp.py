"""publish_event and read_events through the MCP client, in both protocol modes."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from mcp_agentbus.server.app import build_server
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio


async def test_published_events_are_read_back_by_cursor(settings: Settings, mode: str) -> None:
    async with Client(build_server(settings), mode=mode) as client:
        start = await client.call_tool("read_events", {})
        cursor = start.structured_content["cursor"]
        published = await client.call_tool("publish_event", {"topic": "build.failed", "data": {"job": 7}})
        assert not published.is_error
        read = await client.call_tool("read_events", {"after": cursor, "topics": ["build.*"]})
        data: dict[str, Any] = read.structured_content
        assert [(e["topic"], e["agent"], e["data"]) for e in data["events"]] == [
            ("build.failed", "tester", {"job": 7})
        ]
        assert data["events"][0]["id"] == published.structured_content["event_id"]
        assert read.content[0].text.startswith("1 event(s)")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("tool", "arguments", "code"),
    [
        ("read_events", {"after": "yesterday"}, "invalid_argument"),
        ("read_events", {"topics": ["a b"]}, "invalid_argument"),
        ("read_events", {"limit": 0}, "invalid_argument"),
        ("read_events", {"limit": 501}, "invalid_argument"),
        ("read_events", {"wait_seconds": -1}, "invalid_argument"),
        ("read_events", {"since": "0"}, "invalid_argument"),
        ("publish_event", {}, "invalid_argument"),
        ("publish_event", {"topic": "task.completed"}, "invalid_argument"),
        ("publish_event", {"topic": "x y"}, "invalid_argument"),
        ("publish_event", {"topic": "big.data", "data": "x" * 70_000}, "payload_too_large"),
        ("publish_event", {"topic": "ok.topic", "agent": "bad agent"}, "invalid_argument"),
        ("publish_event", {"topic": "ok.topic", "idempotency_key": "has space"}, "invalid_argument"),
    ],
)
async def test_bad_event_arguments_are_clear_tool_errors(
    settings: Settings, mode: str, tool: str, arguments: dict[str, Any], code: str
) -> None:
    async with Client(build_server(settings), mode=mode) as client:
        result = await client.call_tool(tool, arguments)
        assert result.is_error
        error = result.structured_content["error"]
        assert error["code"] == code
        assert error["message"]
        assert error["hint"]
        text = result.content[0].text  # type: ignore[union-attr]
        assert "Traceback" not in text
        assert "Error executing tool" not in text
        after = await client.call_tool("read_events", {"after": "0", "topics": ["ok.*", "big.*"]})
        assert after.structured_content["events"] == []
