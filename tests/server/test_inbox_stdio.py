"""Inboxes across real server processes: `python -m mcp_agentbus serve` on stdio, one process per agent
(as each Claude Code session runs its own), all on the session's real redis-server.

Agents converse through two processes with server-side waits; messages outlive the process that would
read them and are read exactly once; a process killed mid-wait has read nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup
from helpers.stdio import assert_clean_log, ok
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

pytestmark = pytest.mark.anyio

TIMEOUT = 30  # bound on one test; a server process starts in about a second
QUICK = 5  # a waiting read answers well within this once its message is sent (it would wait 10 s)

# `sh` writes its pid, then becomes the server (exec keeps the pid), so a test can SIGKILL it.
LAUNCH = 'echo $$ > "$1"; exec "$0" -m mcp_agentbus serve'

Progress = list[tuple[float, float | None, str | None]]


@pytest.fixture
def bus_env(real_redis_url: str | None) -> dict[str, str]:
    """Environment for server processes on the real Redis, in a namespace of their own."""
    if real_redis_url is None:
        pytest.skip("redis-server not installed")
    return {
        "PATH": os.environ.get("PATH", ""),
        "AGENTBUS_REDIS_URL": real_redis_url,
        "AGENTBUS_NAMESPACE": f"inbox-{uuid.uuid4().hex[:12]}",
        "AGENTBUS_MAX_WAIT_SECONDS": "30",  # wait_seconds=10 is not capped
    }


@dataclass
class Agent:
    """A client session to a server process that acts as one agent (its AGENTBUS_AGENT)."""

    name: str
    client: Client
    pid: int
    log: Path
    stop: anyio.Event = field(default_factory=anyio.Event)  # for `agents`: end this session now
    closed: anyio.Event = field(default_factory=anyio.Event)  # for `agents`: it ended

    @asynccontextmanager
    async def closing(self) -> AsyncIterator[None]:
        """End this session of `agents` (its server process exits) when the block ends, before the rest."""
        yield
        self.stop.set()
        with anyio.fail_after(QUICK):
            await self.closed.wait()

    async def ok(self, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        return await ok(self.client, tool, args)

    async def send(self, to: str, body: str, **args: Any) -> dict[str, Any]:
        return await self.ok("send_message", {"to": to, "body": body, **args})

    async def read(self, **args: Any) -> dict[str, Any]:
        return await self.ok("read_inbox", args)


@asynccontextmanager
async def agent(env: dict[str, str], name: str, tmp: Path, mode: str = "legacy") -> AsyncIterator[Agent]:
    """A server process for agent `name` and a client session to it; the server's stderr goes to a log."""
    run = tmp / f"{name}-{uuid.uuid4().hex[:6]}"
    pidfile, log = run.with_suffix(".pid"), run.with_suffix(".log")
    params = StdioServerParameters(
        command="sh",
        args=["-c", LAUNCH, sys.executable, str(pidfile)],
        env={**env, "AGENTBUS_AGENT": name},
        cwd=str(tmp),
    )
    with log.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:
            assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
            yield Agent(name, client, int(pidfile.read_text()), log)


@asynccontextmanager
async def agents(env: dict[str, str], tmp: Path, *specs: tuple[str, str]) -> AsyncIterator[list[Agent]]:
    """Several `agent` processes (name, mode), started at once: each session lives in a task of its own
    (a client is entered and left in one task) until the block ends."""
    started: dict[int, Agent] = {}
    ready = anyio.Event()

    async def run(i: int, name: str, mode: str) -> None:
        async with agent(env, name, tmp, mode) as one:
            started[i] = one
            if len(started) == len(specs):
                ready.set()
            await one.stop.wait()
        one.closed.set()

    async with anyio.create_task_group() as tg:
        for i, (name, mode) in enumerate(specs):
            tg.start_soon(run, i, name, mode)
        await ready.wait()
        try:
            yield [started[i] for i in range(len(specs))]
        finally:
            for one in started.values():
                one.stop.set()


class Waiting:
    """A read_inbox with a server-side wait, running in the background of a task group."""

    def __init__(self, reader: Agent, tg: TaskGroup, **args: Any) -> None:
        self.result: dict[str, Any] = {}
        self.updates: Progress = []
        self.waiting = anyio.Event()  # set by the first progress notification: the server is waiting
        self.done = anyio.Event()
        self._reader, self._args = reader, {"wait_seconds": 10, **args}
        tg.start_soon(self._run)

    async def _progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.updates.append((progress, total, message))
        self.waiting.set()

    async def _run(self) -> None:
        result = await self._reader.client.call_tool(
            "read_inbox", self._args, progress_callback=self._progress
        )
        assert result.is_error is not True and result.structured_content is not None
        self.result = result.structured_content
        self.done.set()

    async def get(self) -> dict[str, Any]:
        with anyio.fail_after(QUICK):
            await self.done.wait()
        return self.result


async def exchange(reader: Agent, writer: Agent, *, gate: str, **send: Any) -> tuple[dict[str, Any], ...]:
    """`reader` waits for a message in its own process while `writer` sends it through another one.
    gate="progress" sends only once the wait reported progress (it is surely waiting on the server);
    gate="soon" sends a moment after the read started."""
    async with anyio.create_task_group() as tg:
        wait = Waiting(reader, tg)
        if gate == "progress":
            with anyio.fail_after(QUICK):
                await wait.waiting.wait()
        else:
            await anyio.sleep(0.2)
        sent = await writer.send(reader.name, **send)
        got = await wait.get()
    return sent, got


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_two_agents_converse_through_two_processes(
    bus_env: dict[str, str], tmp_path: Path, mode: str
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with agents(bus_env, tmp_path, ("alice", mode), ("bob", mode)) as (a, b):
            await a.ok("heartbeat", {"capabilities": ["planning"]})
            await b.ok("heartbeat", {"capabilities": ["review"]})

            # alice waits in her process; bob's message through his process wakes her wait
            sent, got = await exchange(
                a, b, gate="progress", body="Shall I take the auth module?", subject="auth", data={"n": 1}
            )
            [first] = got["messages"]
            assert first["id"] == sent["message_id"] and sent["recipients"] == ["alice"]
            assert (first["from"], first["to"], first["subject"]) == ("bob", "alice", "auth")
            assert first["body"] == "Shall I take the auth module?" and first["data"] == {"n": 1}
            assert got["unread_remaining"] == 0 and got["notices"] == []
            thread = first["thread_id"]

            # bob waits for the answer, which stays in the thread
            sent, got = await exchange(b, a, gate="soon", body="Yes, go ahead.", reply_to=first["id"])
            [answer] = got["messages"]
            assert answer["id"] == sent["message_id"] and answer["from"] == "alice"
            assert answer["thread_id"] == thread and answer["reply_to"] == first["id"]

            # a few more turns both ways, all in the thread, one to bob's role
            last = answer
            for turn in range(4):
                reader, writer = (a, b) if turn % 2 == 0 else (b, a)
                body = f"turn {turn}"
                if reader is b:
                    async with anyio.create_task_group() as tg:
                        wait = Waiting(b, tg, thread_id=thread)
                        await anyio.sleep(0.2)
                        sent = await a.send("role:review", body, reply_to=last["id"])
                        got = await wait.get()
                    assert sent["recipients"] == ["bob"]
                else:
                    sent, got = await exchange(reader, writer, gate="soon", body=body, reply_to=last["id"])
                [last] = got["messages"]
                assert last["id"] == sent["message_id"] and last["body"] == body
                assert last["from"] == writer.name and last["thread_id"] == thread

            for each in (a, b):
                assert await each.read() == {"notices": [], "messages": [], "unread_remaining": 0}
                assert (await each.ok("heartbeat"))["unread_messages"] == 0
    assert_clean_log(a.log)
    assert_clean_log(b.log)


async def test_messages_outlive_the_process_and_are_read_exactly_once(
    bus_env: dict[str, str], tmp_path: Path
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with agents(bus_env, tmp_path, ("bob", "auto"), ("alice", "legacy")) as (b, first_run):
            sent = [await b.send("alice", f"note {i}", subject=f"n{i}") for i in range(5)]
            ids = [s["message_id"] for s in sent]
            assert sent[0]["notices"] == [
                "alice is not alive on the bus now; the message waits in its inbox."
            ]

            async with first_run.closing():
                beat = await first_run.ok("heartbeat")
                assert beat["unread_messages"] == 5
                assert (
                    "5 unread message(s) in your inbox, newest from bob: 'n4' (read_inbox)."
                    in (beat["notices"])
                )
                got = await first_run.read(limit=2)
                assert [m["id"] for m in got["messages"]] == ids[:2] and got["unread_remaining"] == 3
            first_log = first_run.log  # that process has exited

            async with agent(bus_env, "alice", tmp_path) as second_run:
                assert second_run.pid != first_run.pid
                got = await second_run.read()
                assert [m["id"] for m in got["messages"]] == ids[2:]
                assert [m["body"] for m in got["messages"]] == ["note 2", "note 3", "note 4"]
                assert got["unread_remaining"] == 0
                assert (await second_run.read())["messages"] == []
                assert (await second_run.ok("heartbeat"))["notices"] == []

            reads = await b.ok("read_events", {"after": "0", "topics": ["message.read"]})
            read_ids = [i for e in reads["events"] for i in e["data"]["messages"]]
            assert read_ids == ids, "each message was read once"
    assert_clean_log(first_log)
    assert_clean_log(second_run.log)


async def test_a_process_killed_mid_wait_has_read_nothing(bus_env: dict[str, str], tmp_path: Path) -> None:
    failed: list[BaseException] = []
    with anyio.fail_after(TIMEOUT):
        async with agents(bus_env, tmp_path, ("bob", "auto"), ("alice", "legacy")) as (b, doomed):
            async with doomed.closing():
                await doomed.ok("heartbeat")
                waiting, gone = anyio.Event(), anyio.Event()

                async def progress(progress: float, total: float | None, message: str | None) -> None:
                    waiting.set()

                async def wait_for_mail() -> None:
                    try:
                        await doomed.client.call_tool(
                            "read_inbox", {"wait_seconds": 10}, progress_callback=progress
                        )
                    except MCPError as exc:  # the connection closes under the pending call
                        failed.append(exc)
                    gone.set()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(wait_for_mail)
                    with anyio.fail_after(QUICK):
                        await waiting.wait()
                    os.kill(doomed.pid, signal.SIGKILL)
                    with anyio.fail_after(QUICK):
                        await gone.wait()
            assert failed and "closed" in str(failed[0]).lower(), failed

            sent = await b.send("alice", "are you there?")
            assert sent["recipients"] == ["alice"]
            async with agent(bus_env, "alice", tmp_path) as revived:
                got = await revived.read()
                assert [m["id"] for m in got["messages"]] == [sent["message_id"]]
                assert got["unread_remaining"] == 0

            reads = await b.ok("read_events", {"after": "0", "topics": ["message.*"]})
            topics = [(e["topic"], e["agent"]) for e in reads["events"]]
            assert topics == [("message.sent", "bob"), ("message.read", "alice")]
    assert_clean_log(revived.log)
