"""Resource subscriptions notified across two `agentbus serve` processes on one Redis.

Process A's client subscribes; process B's client makes the changes. Nothing is shared but the
Redis server, so each update crossed the namespace's wake-up channel, was mapped to URIs by A and
pushed over A's stdout: legacy ``notifications/resources/updated`` (what Claude Code gets), or
events on a 2026-07-28 ``subscriptions/listen`` stream.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers.subscriptions import Watcher, on_updates, subscribed
from mcp import Client, StdioServerParameters
from mcp.client.session import MessageHandlerFnT
from mcp.client.stdio import stdio_client

pytestmark = pytest.mark.anyio

SERVE = [sys.executable, "-m", "mcp_agentbus", "serve"]
TIMEOUT = 20  # bound on one test; a server process starts in about a second
INBOX, LOCKS = "agentbus://inbox/alice", "agentbus://locks"


@pytest.fixture
def bus_env(real_redis_url: str | None) -> dict[str, str]:
    """Environment for server processes on the real Redis, in a namespace of their own (the SDK
    does not pass os.environ on to the child)."""
    if real_redis_url is None:
        pytest.skip("redis-server not installed")
    return {
        "PATH": os.environ.get("PATH", ""),
        "AGENTBUS_REDIS_URL": real_redis_url,
        "AGENTBUS_NAMESPACE": f"push-{uuid.uuid4().hex[:12]}",
        "AGENTBUS_AGENT": "stdio-default",
        "AGENTBUS_MAX_WAIT_SECONDS": "5",
    }


@asynccontextmanager
async def serve(
    env: dict[str, str], log: Path, mode: str, message_handler: MessageHandlerFnT | None = None
) -> AsyncIterator[Client]:
    """A server subprocess on stdio and a client session to it; the server's stderr goes to `log`."""
    params = StdioServerParameters(command=SERVE[0], args=SERVE[1:], env=env, cwd=str(log.parent))
    with log.open("w") as errlog:
        transport = stdio_client(params, errlog=errlog)
        async with Client(transport, mode=mode, message_handler=message_handler) as client:
            yield client


async def ok(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert result.is_error is not True, result.content
    structured = result.structured_content
    assert isinstance(structured, dict)
    return structured


async def read_text(client: Client, uri: str) -> str:
    contents = (await client.read_resource(uri)).contents
    assert len(contents) == 1
    text = getattr(contents[0], "text", None)
    assert isinstance(text, str)
    return text


def assert_clean_log(log: Path) -> None:
    text = log.read_text()
    assert "Traceback" not in text, text


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_subscription_notified_across_two_server_processes(
    bus_env: dict[str, str], tmp_path: Path, mode: str
) -> None:
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    watcher = Watcher()
    handler = on_updates(watcher) if mode == "legacy" else None
    with anyio.fail_after(TIMEOUT):
        async with (
            serve({**bus_env, "AGENTBUS_AGENT": "alice"}, log_a, mode, handler) as a,
            serve({**bus_env, "AGENTBUS_AGENT": "bob"}, log_b, "legacy") as b,
            subscribed(a, mode, [INBOX, LOCKS], watcher) as w,
        ):
            # a change to neither subscribed resource: A's client hears nothing
            await ok(b, "send_message", {"to": "carol", "body": "not for alice"})
            await w.exactly()

            sent = await ok(b, "send_message", {"to": "alice", "subject": "hi", "body": "from process B"})
            await w.expect(INBOX)
            lock = await ok(b, "acquire_lock", {"resource": "src/shared.py"})
            assert lock["acquired"] is True
            await w.expect(LOCKS)
            await w.exactly()  # one change, one notification per subscribed URI

            # what A's client is told about, A's process reads back from the shared Redis
            assert sent["message_id"] in await read_text(a, INBOX)
            held = await read_text(a, LOCKS)
            assert '"holder": "bob"' in held and '"resource": "src/shared.py"' in held

    assert watcher.seen == Counter({INBOX: 1, LOCKS: 1})
    assert_clean_log(log_a)
    assert_clean_log(log_b)
