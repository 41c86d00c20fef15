"""The server as hosts run it: `python -m mcp_agentbus serve` as a stdio subprocess.

Driven through the real `mcp.Client` over the real pipes (legacy handshake, as Claude Code speaks it),
with two agents on one process and two processes on one Redis; and by hand, to check that nothing
but JSON-RPC ever reaches stdout.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers.stdio import assert_clean_log, ok
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from mcp_agentbus.server.tools import TOOLS

SERVE = [sys.executable, "-m", "mcp_agentbus", "serve"]
TIMEOUT = 30  # bound on one test; a server process starts in about a second


@pytest.fixture
def bus_env(real_redis_url: str | None) -> dict[str, str]:
    """Environment for server processes on the real Redis, in a namespace of their own. The SDK does
    not pass os.environ on to the child, so everything it needs is here."""
    if real_redis_url is None:
        pytest.skip("redis-server not installed")
    return {
        "PATH": os.environ.get("PATH", ""),
        "AGENTBUS_REDIS_URL": real_redis_url,
        "AGENTBUS_NAMESPACE": f"stdio-{uuid.uuid4().hex[:12]}",
        "AGENTBUS_AGENT": "stdio-default",
        "AGENTBUS_MAX_WAIT_SECONDS": "5",
        "AGENTBUS_REAPER_INTERVAL_SECONDS": "0.2",
    }


@asynccontextmanager
async def serve(env: dict[str, str], log: Path, mode: str = "legacy") -> AsyncIterator[Client]:
    """A server subprocess on stdio and a client session to it; the server's stderr goes to `log`."""
    params = StdioServerParameters(command=SERVE[0], args=SERVE[1:], env=env, cwd=str(log.parent))
    with log.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:
            yield client


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_workflow_over_stdio_with_two_agents(
    bus_env: dict[str, str], tmp_path: Path, mode: str
) -> None:
    log = tmp_path / "server.log"
    with anyio.fail_after(TIMEOUT):
        async with serve(bus_env, log, mode) as client:
            assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
            assert client.server_info is not None and client.server_info.name == "agentbus"
            tools = {t.name for t in (await client.list_tools()).tools}
            assert "claim_task" in tools and "create_workflow" in tools

            me = await ok(client, "heartbeat")  # no agent argument: the process's AGENTBUS_AGENT
            assert me["agent"]["agent"] == "stdio-default"
            await ok(client, "heartbeat", {"agent": "coder", "capabilities": ["code"]})

            created = await ok(
                client,
                "create_workflow",
                {
                    "agent": "planner",
                    "title": "over stdio",
                    "tasks": [
                        {"key": "write", "title": "Write", "capability": "code", "payload": {"file": "a.py"}},
                        {"key": "review", "title": "Review", "depends_on": ["write"]},
                    ],
                },
            )
            assert created["ready"] == ["write"]

            write = await ok(client, "claim_task", {"agent": "coder"})
            assert write["task"]["key"] == "write" and write["task"]["payload"] == {"file": "a.py"}
            # the planner has no `code` capability: it is told the work is elsewhere
            idle = await ok(client, "claim_task", {"agent": "planner"})
            assert idle["task"] is None
            done = await ok(
                client,
                "complete_task",
                {
                    "agent": "coder",
                    "task_id": write["task"]["id"],
                    "lease_token": write["lease"]["lease_token"],
                    "result": {"lines": 120},
                },
            )
            assert done["unblocked"] == [created["task_ids"]["review"]]

            review = await ok(client, "claim_task", {"agent": "planner"})
            assert review["task"]["key"] == "review"
            assert review["task"]["inputs"] == {"write": {"lines": 120}}
            await ok(
                client,
                "complete_task",
                {
                    "agent": "planner",
                    "task_id": review["task"]["id"],
                    "lease_token": review["lease"]["lease_token"],
                    "result": "approved",
                },
            )

            bad = await client.call_tool("claim_task", {"agent": "planner", "lease_seconds": 0})
            assert bad.is_error is True and bad.structured_content is not None
            assert bad.structured_content["error"]["code"] == "invalid_argument"

            view = await ok(client, "get_workflow", {"workflow_id": created["workflow_id"]})
    workflow = view["workflow"]
    assert workflow["status"] == "done" and workflow["progress"]["done"] == 2
    assert {t["key"]: t["assignee"] for t in workflow["tasks"]} == {"write": "coder", "review": "planner"}
    assert_clean_log(log)


@pytest.mark.anyio
async def test_two_server_processes_share_one_bus(bus_env: dict[str, str], tmp_path: Path) -> None:
    env_a = {**bus_env, "AGENTBUS_AGENT": "agent-a"}
    env_b = {**bus_env, "AGENTBUS_AGENT": "agent-b"}
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    got: dict[str, Any] = {}
    with anyio.fail_after(TIMEOUT):
        async with serve(env_a, log_a) as a, serve(env_b, log_b) as b:
            # A task created through process A is claimed through process B.
            created = await ok(
                a, "create_workflow", {"title": "across", "tasks": [{"key": "job", "title": "Job"}]}
            )
            claim = await ok(b, "claim_task")
            assert claim["task"]["id"] == created["task_ids"]["job"]
            await ok(
                b,
                "complete_task",
                {
                    "task_id": claim["task"]["id"],
                    "lease_token": claim["lease"]["lease_token"],
                    "result": "b did it",
                },
            )
            view = await ok(a, "get_workflow", {"workflow_id": created["workflow_id"]})
            assert view["workflow"]["status"] == "done"
            assert view["workflow"]["tasks"][0]["assignee"] == "agent-b"
            assert view["workflow"]["tasks"][0]["result"] == "b did it"

            # A claim waiting in B wakes up for a task created through A.
            async def wait_in_b() -> None:
                got["claim"] = await ok(b, "claim_task", {"wait_seconds": 5})

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_in_b)
                await anyio.sleep(0.3)  # let B start waiting first
                late = await ok(a, "create_task", {"title": "late"})
            assert got["claim"]["task"] is not None and got["claim"]["task"]["id"] == late["task_id"]

            # Presence is shared too.
            await ok(b, "heartbeat", {"status": "busy"})
            agents = await ok(a, "list_agents")
            assert {x["agent"]: x["tasks"] for x in agents["agents"]} == {"agent-b": [late["task_id"]]}
    assert_clean_log(log_a)
    assert_clean_log(log_b)


# --- stdout carries only the protocol --------------------------------------------------------------


class Lines:
    """Every line a pipe yields, read on a thread so each read can be bounded."""

    def __init__(self, stream: Any) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def next(self, timeout: float = TIMEOUT) -> str | None:
        line = self._queue.get(timeout=timeout)
        if line is not None:
            self.seen.append(line)
        return line

    def rest(self, timeout: float = TIMEOUT) -> None:
        """Wait for the pipe to close and keep what was still unread."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "stdout did not close"
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.seen.append(line)


def test_stdout_carries_only_json_rpc(redis_url: str, tmp_path: Path) -> None:
    """Drive a server by hand, with DEBUG logging on, and check every stdout line is JSON-RPC."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AGENTBUS_REDIS_URL": redis_url,
        "AGENTBUS_NAMESPACE": f"stdout-{uuid.uuid4().hex[:12]}",
        "AGENTBUS_AGENT": "by-hand",
        "AGENTBUS_LOG_LEVEL": "DEBUG",
        "AGENTBUS_MAX_WAIT_SECONDS": "5",
    }
    stderr_path = tmp_path / "stderr.log"
    with (
        stderr_path.open("w") as stderr,
        subprocess.Popen(
            SERVE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=tmp_path,
            text=True,
            encoding="utf-8",
        ) as proc,
    ):
        try:
            assert proc.stdin is not None and proc.stdout is not None
            out = Lines(proc.stdout)
            stdin = proc.stdin

            def send(message: dict[str, Any]) -> None:
                stdin.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
                stdin.flush()

            def response(request_id: int) -> dict[str, Any]:
                while True:
                    line = out.next()
                    assert line is not None, "the server closed stdout"
                    message = json.loads(line)
                    if message.get("id") == request_id:
                        return dict(message)

            send(
                {
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "by-hand", "version": "0"},
                    },
                }
            )
            init = response(1)
            assert init["result"]["serverInfo"]["name"] == "agentbus"
            send({"method": "notifications/initialized"})
            send({"id": 2, "method": "tools/list"})
            assert {t["name"] for t in response(2)["result"]["tools"]} == set(TOOLS)
            calls: list[tuple[str, dict[str, Any]]] = [
                ("heartbeat", {"capabilities": ["x"]}),
                ("create_task", {"title": "print me", "payload": {"text": "hello\nworld"}}),
                ("claim_task", {"wait_seconds": 0}),
                ("claim_task", {"lease_seconds": 0}),  # refused: a tool error
                ("no_such_tool", {}),
                ("get_workflow", {"workflow_id": "wf-424242"}),
            ]
            for i, (name, arguments) in enumerate(calls, start=3):
                send({"id": i, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
                result = response(i)["result"]
                assert "Traceback" not in json.dumps(result)
            # a wait with a progress token: the progress notifications are protocol messages too
            send(
                {
                    "id": 99,
                    "method": "tools/call",
                    "params": {
                        "name": "claim_task",
                        "arguments": {"wait_seconds": 1.2},
                        "_meta": {"progressToken": "p-1"},
                    },
                }
            )
            assert response(99)["result"]["structuredContent"]["task"] is None
            stdin.close()  # end of input: the server exits
            proc.wait(timeout=15)
            out.rest()
        finally:
            if proc.poll() is None:  # only when the test failed midway
                proc.kill()

    assert proc.returncode == 0
    assert out.seen, "no output at all"
    methods = []
    for line in out.seen:
        assert line.endswith("\n")
        message = json.loads(line)  # every stdout line is one JSON-RPC message
        assert isinstance(message, dict) and message.get("jsonrpc") == "2.0", line
        methods.append(message.get("method"))
    assert "notifications/progress" in methods
    log = stderr_path.read_text()
    assert "DEBUG" in log  # the logs went to stderr...
    assert "Traceback" not in log  # ...and nothing failed
