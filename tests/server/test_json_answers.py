"""A tool call that cannot wait is answered with one JSON body by a server that answers with event
streams (`json_answers.py`); a call that waits keeps its stream and its progress. Against real server
processes on a real Redis, by hand and with the SDK's client, in both protocol eras."""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import anyio
import anyio.lowlevel
import httpx2
import pytest
from helpers import fresh_settings, while_it_waits
from helpers.http_servers import INIT, POST_HEADERS, Server, bus_env, connect, http_server
from starlette.types import Message, Receive, Scope, Send

from mcp_agentbus.server.http import build_app
from mcp_agentbus.server.json_answers import JsonAnswers, answered_whole
from mcp_agentbus.server.posted import PEEK_BYTES
from mcp_agentbus.server.tooling import Ctx, progress
from mcp_agentbus.server.tools import TOOLS

pytestmark = pytest.mark.anyio


def call(tool: str, arguments: Any = None, **extra: Any) -> bytes:
    params = {"name": tool} if arguments is None else {"name": tool, "arguments": arguments}
    return json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params, **extra}).encode()


@pytest.fixture(scope="module")
def served(redis_url_real: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = bus_env(redis_url_real, f"answers-{uuid.uuid4().hex[:12]}")
    with http_server(env, tmp_path_factory.mktemp("answers") / "serve.log") as server:
        yield server
        server.assert_clean_log()


def legacy_session(http: httpx2.Client, server: Server) -> dict[str, str]:
    opened = http.post(server.mcp, json=INIT, headers=POST_HEADERS)
    assert opened.headers["content-type"].startswith("text/event-stream")  # as the server is configured
    session = {**POST_HEADERS, "mcp-session-id": opened.headers["mcp-session-id"]}
    http.post(server.mcp, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
    return session


def sse_result(reply: httpx2.Response) -> dict[str, Any]:
    data = [line.removeprefix("data:") for line in reply.text.splitlines() if line.startswith("data:")]
    message: dict[str, Any] = json.loads(data[-1])
    return message


def test_a_heartbeat_is_answered_with_one_json_body_and_a_waiting_claim_with_a_stream(served: Server) -> None:
    with httpx2.Client(timeout=10) as http:
        session = legacy_session(http, served)
        beat = http.post(served.mcp, content=call("heartbeat", {"agent": "plain-1"}), headers=session)
        assert beat.status_code == 200
        assert beat.headers["content-type"].startswith("application/json")
        answer = beat.json()
        assert answer["id"] == 7
        assert answer["result"]["structuredContent"]["agent"]["agent"] == "plain-1"

        wait = {"agent": "plain-1", "capabilities": [f"none-{uuid.uuid4().hex[:8]}"], "wait_seconds": 0.5}
        claim = http.post(served.mcp, content=call("claim_task", wait), headers=session)
        assert claim.headers["content-type"].startswith("text/event-stream")
        assert sse_result(claim)["result"]["structuredContent"]["task"] is None


def test_a_body_past_the_peek_bound_keeps_the_stream(served: Server) -> None:
    padded = call("heartbeat", {"agent": "plain-2"}) + b" " * PEEK_BYTES  # JSON allows trailing space
    with httpx2.Client(timeout=10) as http:
        session = legacy_session(http, served)
        reply = http.post(served.mcp, content=padded, headers=session)
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert sse_result(reply)["result"]["structuredContent"]["agent"]["agent"] == "plain-2"


def test_a_malformed_call_gets_the_sdks_own_answer(served: Server) -> None:
    with httpx2.Client(timeout=10) as http:
        session = legacy_session(http, served)
        reply = http.post(served.mcp, content=b'{"jsonrpc": "2.0", "id": 3, "method"', headers=session)
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == -32700  # parse error


def test_a_stateless_server_answers_a_heartbeat_with_one_json_body(
    redis_url_real: str, tmp_path: Path
) -> None:
    env = bus_env(redis_url_real, f"answers-{uuid.uuid4().hex[:12]}")
    with http_server(env, tmp_path / "serve.log", "--stateless") as server, httpx2.Client(timeout=10) as http:
        headers = {**POST_HEADERS, "mcp-protocol-version": "2025-11-25"}
        beat = http.post(server.mcp, content=call("heartbeat", {"agent": "plain-3"}), headers=headers)
        assert beat.headers["content-type"].startswith("application/json")
        assert beat.json()["result"]["structuredContent"]["agent"]["agent"] == "plain-3"
        claim = http.post(
            server.mcp,
            content=call(
                "claim_task", {"agent": "plain-3", "capabilities": ["nothing"], "wait_seconds": 0.3}
            ),
            headers=headers,
        )
        assert claim.headers["content-type"].startswith("text/event-stream")
        server.assert_clean_log()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_calls_answered_both_ways_at_once_each_get_their_own_answer(served: Server, mode: str) -> None:
    """While a claim waits on its stream (and reports progress), heartbeats from the same client (in
    the legacy era, the same session) are answered with JSON bodies; each answer reaches its own call,
    and the claim gets the task."""
    capability = f"cap-{uuid.uuid4().hex[:8]}"
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async with connect(served, mode) as worker, connect(served, mode) as coordinator:

        async def meanwhile() -> None:
            beats: list[dict[str, Any]] = []

            async def beat(n: int) -> None:
                beats.append(await worker.ok("heartbeat", {"agent": f"beat-{n}", "note": str(n)}))

            async with anyio.create_task_group() as tg:
                for n in range(40):
                    tg.start_soon(beat, n)
            assert sorted(b["agent"]["note"] for b in beats) == sorted(str(n) for n in range(40))
            assert all(b["agent"]["agent"] == f"beat-{b['agent']['note']}" for b in beats)
            await anyio.sleep(1.2)  # a progress tick (every second) reaches the waiting claim meanwhile
            await coordinator.ok("create_task", {"title": "late", "capability": capability})

        claimed = await while_it_waits(
            lambda: worker.ok(
                "claim_task",
                {"agent": "waiter", "capabilities": [capability], "wait_seconds": 5},
                progress_callback=on_progress,
            ),
            meanwhile,
        )
    assert claimed["task"]["title"] == "late"
    assert progress, "the waiting claim's stream carried no progress"


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_a_tool_reports_progress_only_through_progress_and_waits_only_on_wait_seconds(name: str) -> None:
    """What a call answered whole relies on: a tool reports progress through `progress(ctx)` (nothing
    while its answer is one body), and a tool that waits takes `wait_seconds`, 0 unless given."""
    fn, _ = TOOLS[name]
    source = inspect.getsource(fn)
    assert "report_progress" not in source
    if "progress(ctx)" in source:
        assert inspect.signature(fn).parameters["wait_seconds"].default == 0


def asgi_post(body: bytes, *, method: str = "POST", chunks: int = 1) -> tuple[Scope, Receive, list[Message]]:
    """A request as uvicorn hands it on: `body` in `chunks` pieces (all of it in each, for a flood);
    and the pieces not yet received."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8765"),
            (b"content-type", b"application/json"),
            (b"accept", b"application/json, text/event-stream"),
            (b"content-length", b"100"),  # what a client may claim, whatever it then sends
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8765),
    }
    pieces: list[Message] = [
        {"type": "http.request", "body": body, "more_body": n < chunks - 1} for n in range(chunks)
    ]

    async def receive() -> Message:
        return pieces.pop(0) if pieces else {"type": "http.disconnect"}

    return scope, receive, pieces


@pytest.mark.parametrize(
    ("body", "method", "whole"),
    [
        (call("heartbeat"), "POST", True),
        (call("claim_task", {"wait_seconds": 2}), "POST", False),
        (call("heartbeat") + b" " * PEEK_BYTES, "POST", False),
        (call("heartbeat"), "GET", False),
    ],
)
async def test_json_answers_marks_the_request_it_serves_and_replays_its_body(
    body: bytes, method: str, whole: bool
) -> None:
    seen: list[tuple[bool, bool, bytes]] = []

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        reporter = SimpleNamespace(report_progress=lambda *_: None)
        message = await receive()
        seen.append((answered_whole(), progress(cast("Ctx", reporter)) is None, message.get("body", b"")))

    scope, receive, _ = asgi_post(body, method=method)
    await JsonAnswers(handler)(scope, receive, lambda _: anyio.lowlevel.checkpoint())
    assert seen == [(whole, whole, body)]
    assert not answered_whole()  # only while that request is served


async def test_a_flood_is_refused_at_the_sdks_body_limit_before_anything_reads_it_whole(
    redis_url_real: str,
) -> None:
    """A client that claims a short body and streams a long one (h11 frames it by its chunks) is cut off
    at the SDK's 4 MiB: the body is looked at only behind that limit."""
    app = build_app(fresh_settings(redis_url_real))
    scope, receive, left = asgi_post(b"0" * 1_048_576, chunks=64)
    answers: list[Message] = []

    async def send(message: Message) -> None:
        answers.append(message)

    await app(scope, receive, send)
    assert answers[0]["status"] == 413
    assert len(left) >= 64 - 5  # read up to the limit, not to the end
