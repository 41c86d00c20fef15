"""Which fence guards what (issue 15): a lease's `fence` and a lock's `fencing_token` are told apart in
the same words wherever an agent or a person meets them — the descriptions of the tools that hand them
out or end their use, the worker prompts, and the README."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client
from mcp.types import TextContent

from mcp_agentbus.server.app import build_server
from mcp_agentbus.server.tooling import FENCES
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


def words(text: str) -> str:
    return " ".join(text.split())


async def test_the_tools_and_the_worker_prompt_say_which_fence_guards_what() -> None:
    settings = Settings(redis_url="memory://", namespace="fences", agent=None)
    async with Client(build_server(settings)) as client:
        described = {t.name: t.description or "" for t in (await client.list_tools()).tools}
        prompt = await client.get_prompt("worker", {"agent": "w-1"})
    for tool in ("complete_task", "fail_task", "acquire_lock"):
        assert FENCES in described[tool], (tool, described[tool])
    [message] = prompt.messages
    assert isinstance(message.content, TextContent)
    assert FENCES in words(message.content.text)


@pytest.mark.parametrize("path", ["README.md", "examples/subagent_prompt.md"])
def test_the_docs_say_which_fence_guards_what_in_the_same_words(path: str) -> None:
    text = words((REPO / path).read_text())
    assert text.count(FENCES) == 1, path
