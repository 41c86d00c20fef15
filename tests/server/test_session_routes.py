"""`SessionRoutes` in-process: what it names, strips and passes through, around an app that records what
it was given; and a request passed on to another worker's Unix socket (uvicorn in this process), its
stream relayed and ended with its client. On real worker processes: test_workers.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
import uvicorn
from anyio.abc import SocketStream
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_agentbus.server.session_routes import SessionRoutes, socket_path

pytestmark = pytest.mark.anyio


class Recorder:
    """An ASGI app that records the session header it was given and answers with `answer_id`."""

    def __init__(self, answer_id: bytes | None = b"sdk-id") -> None:
        self.given: list[bytes | None] = []
        self.answer_id = answer_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.given.append(dict(scope["headers"]).get(b"mcp-session-id"))
        headers = [] if self.answer_id is None else [(b"mcp-session-id", self.answer_id)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})


async def call(routes: SessionRoutes, session: bytes | None, path: str = "/mcp") -> list[Message]:
    headers = [(b"host", b"127.0.0.1:1"), (b"content-length", b"2")]
    headers += [] if session is None else [(b"mcp-session-id", session)]
    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"", "headers": headers}
    sent: list[Message] = []
    requested = False

    async def receive() -> Message:  # the body, then nothing until the client would go
        nonlocal requested
        if requested:
            await anyio.sleep_forever()
        requested = True
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await routes(scope, receive, send)
    return sent


def answered_id(sent: list[Message]) -> bytes | None:
    return dict(sent[0]["headers"]).get(b"mcp-session-id")


async def test_a_session_opened_here_is_named_after_this_worker(tmp_path: Path) -> None:
    app = Recorder()
    sent = await call(SessionRoutes(app, slot=3, size=4, directory=tmp_path), None)
    assert app.given == [None]
    assert answered_id(sent) == b"w3-sdk-id"


async def test_its_own_session_reaches_the_sdk_by_the_sdk_s_id(tmp_path: Path) -> None:
    app = Recorder()
    sent = await call(SessionRoutes(app, slot=1, size=2, directory=tmp_path), b"w1-sdk-id")
    assert app.given == [b"sdk-id"]
    assert answered_id(sent) == b"w1-sdk-id"


@pytest.mark.parametrize(
    ("session", "given"),
    [
        (b"w0-abc", b"abc"),  # worker 0's, whose socket is not there (exited): the SDK says 404
        (b"w9-abc", b"abc"),  # no such worker
        (b"abc", b"abc"),  # not one of ours (from before a restart, or made up): as it is
    ],
)
async def test_a_session_no_worker_can_serve_gets_the_sdk_s_answer_here(
    tmp_path: Path, session: bytes, given: bytes
) -> None:
    app = Recorder(answer_id=None)
    sent = await call(SessionRoutes(app, slot=1, size=2, directory=tmp_path), session)
    assert app.given == [given]
    assert sent[0]["status"] == 200 and answered_id(sent) is None


async def test_other_paths_pass_untouched(tmp_path: Path) -> None:
    app = Recorder()
    sent = await call(SessionRoutes(app, slot=0, size=2, directory=tmp_path), b"w1-abc", path="/healthz")
    assert app.given == [b"w1-abc"]
    assert answered_id(sent) == b"sdk-id"


class Streamer:
    """An ASGI app that answers with the session id it was given, then streams `chunks` a beat apart
    until they run out or its client is gone (which it records)."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.body = b""
        self.gone = anyio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        message = await receive()
        self.body = message.get("body", b"")
        session = dict(scope["headers"]).get(b"mcp-session-id", b"")
        start = [(b"mcp-session-id", session), (b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": start})

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            self.gone.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            for n in range(self.chunks):
                if self.gone.is_set():
                    return
                await send({"type": "http.response.body", "body": b"data: %d\n\n" % n, "more_body": True})
                await anyio.sleep(0.05)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            tg.cancel_scope.cancel()


@asynccontextmanager
async def worker_on_socket(app: ASGIApp, directory: Path, slot: int) -> AsyncIterator[None]:
    """`app` behind worker `slot`'s SessionRoutes, served by uvicorn on that worker's Unix socket."""
    routed = SessionRoutes(app, slot=slot, size=2, directory=directory)
    config = uvicorn.Config(routed, uds=str(socket_path(directory, slot)), log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn sets a flag, not an event
                await anyio.sleep(0.01)
        yield
        server.should_exit = True


async def test_another_worker_s_session_is_served_there_and_its_stream_relayed(tmp_path: Path) -> None:
    owner = Streamer(chunks=3)
    async with worker_on_socket(owner, tmp_path, slot=1):
        sent = await call(SessionRoutes(Recorder(), slot=0, size=2, directory=tmp_path), b"w1-abc")
    assert owner.body == b"{}"
    assert sent[0]["status"] == 200 and answered_id(sent) == b"w1-abc"
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_a_client_gone_ends_the_stream_at_the_worker_that_serves_it(tmp_path: Path) -> None:
    owner = Streamer(chunks=1_000)  # 50 s of stream, unless its client goes
    front = SessionRoutes(Recorder(), slot=0, size=2, directory=tmp_path)
    hang_up = anyio.Event()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/mcp",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:1"), (b"mcp-session-id", b"w1-abc")],
    }
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message.get("body"):
            hang_up.set()  # the first event came through: the client goes

    async with worker_on_socket(owner, tmp_path, slot=1):
        with anyio.fail_after(10):
            await front(scope, receive, send)
            await owner.gone.wait()


async def test_a_request_whose_client_goes_mid_body_is_never_served(tmp_path: Path) -> None:
    """Cut off where it arrived, it is cut off where it would be served: the owner never gets it whole
    (a chunked body is not ended for it)."""
    outcome: list[str] = []
    seen = anyio.Event()

    async def owner(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                outcome.append("cut off")
                break
            if not message.get("more_body", False):
                outcome.append("whole")
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"served"})
                break
        seen.set()

    front = SessionRoutes(Recorder(), slot=0, size=2, directory=tmp_path)
    headers = [(b"host", b"127.0.0.1:1"), (b"transfer-encoding", b"chunked"), (b"mcp-session-id", b"w1-abc")]
    scope = {"type": "http", "method": "POST", "path": "/mcp", "query_string": b"", "headers": headers}
    parts: list[Message] = [
        {"type": "http.request", "body": b'{"jsonrpc": "2.0", ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:  # a first chunk, then the client is gone
        if not parts:
            await anyio.sleep_forever()
        return parts.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    async with worker_on_socket(owner, tmp_path, slot=1):
        with anyio.fail_after(10):
            await front(scope, receive, send)
            await seen.wait()
    assert outcome == ["cut off"]
    assert sent == [], "no answer for a client that is gone"


@asynccontextmanager
async def broken_worker(directory: Path, slot: int, answer: bytes) -> AsyncIterator[None]:
    """A worker that reads a request's head, writes `answer` and drops the connection."""

    async def serve(stream: SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head:
                head += await stream.receive()
            await stream.send(answer) if answer else None

    listener = await anyio.create_unix_listener(socket_path(directory, slot))
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield
        tg.cancel_scope.cancel()


async def test_a_worker_that_drops_a_request_unanswered_gets_it_a_502_saying_what_to_do(
    tmp_path: Path,
) -> None:
    async with broken_worker(tmp_path, 1, b""):
        sent = await call(SessionRoutes(Recorder(), slot=0, size=2, directory=tmp_path), b"w1-abc")
    assert sent[0]["status"] == 502
    error = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["error"]["data"]["error"]
    assert error["code"] == "session_unavailable"
    assert "404" in error["hint"] and "initialize" in error["hint"]


async def test_an_answer_broken_off_by_its_worker_stays_cut_off(tmp_path: Path) -> None:
    """The client's answer ends without its last chunk, so the client sees it incomplete; nothing
    raises in the worker that relayed it."""
    partial = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    partial += b"8\r\ndata: 1\n\r\n"
    async with broken_worker(tmp_path, 1, partial):
        sent = await call(SessionRoutes(Recorder(), slot=0, size=2, directory=tmp_path), b"w1-abc")
    assert sent[0]["status"] == 200
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"data: 1\n"
    assert all(m.get("more_body") for m in sent[1:]), "never ended as if whole"
