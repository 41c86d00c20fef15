"""An in-memory MCP client session on a fresh server, and how tests read its results."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast, get_type_hints

import pytest
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from mcp import Client
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from mcp_agentbus.server.app import build_server
from mcp_agentbus.server.tools import TOOLS
from mcp_agentbus.settings import Settings

ALL_TOOLS = {
    "heartbeat",
    "list_agents",
    "create_task",
    "create_workflow",
    "claim_task",
    "complete_task",
    "fail_task",
    "get_workflow",
    "cancel_task",
    "retry_task",
    "send_message",
    "read_inbox",
    "acquire_lock",
    "release_lock",
    "publish_event",
    "read_events",
    "set_state",
    "get_state",
}


WORKER_TOOLS = {
    "heartbeat",
    "claim_task",
    "complete_task",
    "fail_task",
    "get_workflow",
    "send_message",
    "read_inbox",
    "acquire_lock",
    "release_lock",
    "set_state",
    "get_state",
}


def text_of(result: CallToolResult) -> str:
    assert len(result.content) == 1, result.content
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def assert_readable(result: CallToolResult) -> None:
    """A success: a readable first line (not JSON), the notices, and not the whole structured content
    again (the text gives only what the line does not say, each part as `label: <json>`)."""
    text = text_of(result)
    lines = text.splitlines()
    first = lines[0]
    assert first.strip(), text
    assert not first.lstrip().startswith(("{", "[")), text
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)
    structured = result.structured_content or {}
    for line in lines:
        try:
            repeated = json.loads(line) == structured
        except json.JSONDecodeError:
            continue
        assert not repeated, f"the text repeats the whole result: {text}"
    for notice in structured.get("notices", []):
        assert f"Notice: {notice}" in text
    assert "Traceback" not in text


def assert_tool_error(result: CallToolResult, code: str, *fragments: str) -> dict[str, str]:
    """A tool error in the agentbus shape, with a readable text and no Python internals."""
    text = text_of(result)
    assert result.is_error is True, text
    assert result.structured_content is not None, text
    assert set(result.structured_content) == {"error"}, result.structured_content
    error = result.structured_content["error"]
    assert set(error) == {"code", "message", "hint"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    assert isinstance(error["hint"], str) and error["hint"].strip(), error
    for fragment in fragments:
        assert fragment.lower() in error["message"].lower(), (fragment, error)
    assert text.startswith(f"Error [{code}]: "), text
    assert error["message"] in text and error["hint"] in text
    assert "Traceback" not in text
    assert "Error executing tool" not in text
    return dict(error)


@dataclass
class Bus:
    """One MCP client session, with the tools' output schemas to check results against."""

    client: Client
    schemas: dict[str, dict[str, Any]]

    async def call(self, tool: str, args: dict[str, Any] | None = None, **kw: Any) -> CallToolResult:
        return await self.client.call_tool(tool, args if args is not None else {}, **kw)

    async def ok(self, tool: str, args: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        """Call a tool that must succeed; check the result's shape; return its structured content."""
        return checked(self.schemas, tool, await self.call(tool, args, **kw))

    async def err(self, tool: str, args: dict[str, Any], code: str, *fragments: str) -> dict[str, str]:
        return assert_tool_error(await self.call(tool, args), code, *fragments)


def checked(schemas: dict[str, dict[str, Any]], tool: str, result: CallToolResult) -> dict[str, Any]:
    """The structured content of a successful call, checked against the output schema the server
    listed (`schemas`) and, field by field, against the tool's result model, which the server does not
    check its results against (`app._tool`); its text checked readable."""
    assert result.is_error is not True, text_of(result)
    assert result.structured_content is not None
    validator(schemas[tool]).validate(result.structured_content)
    validator(result_schema(tool)).validate(result.structured_content)
    assert_readable(result)
    return cast("dict[str, Any]", result.structured_content)


def result_schema(tool: str) -> dict[str, Any]:
    """The JSON schema of `tool`'s result model (its return annotation), as results are dumped: every
    field present, each of its type."""
    hints = get_type_hints(TOOLS[tool][0], include_extras=True)
    model: type[BaseModel] = hints["return"].__metadata__[0]
    return model.model_json_schema(mode="serialization")


_validators: dict[str, Validator] = {}


def validator(schema: dict[str, Any]) -> Validator:
    """A compiled validator per output schema (compiling is far slower than validating)."""
    key = json.dumps(schema, sort_keys=True)
    if key not in _validators:
        cls = validator_for(schema)
        cls.check_schema(schema)
        _validators[key] = cls(schema)
    return _validators[key]


@asynccontextmanager
async def connect(settings: Settings, mode: str) -> AsyncIterator[Bus]:
    """A fresh server on `settings` (its lifespan opens the bus) and a client session to it."""
    async with Client(build_server(settings), mode=mode) as client:
        listed = await client.list_tools()
        schemas = {t.name: t.output_schema for t in listed.tools if t.output_schema is not None}
        yield Bus(client, schemas)


def fill(value: Any, world: dict[str, str]) -> Any:
    """`value` with the placeholders replaced by the ids and token of the world."""
    if isinstance(value, str):
        return world.get(value, value)
    if isinstance(value, dict):
        return {k: fill(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, world) for v in value]
    return value
