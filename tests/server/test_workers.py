"""`agentbus serve --transport http --workers N`: N real processes on one port behave as one bus.

The server is started as a user starts it (a subprocess on a free loopback port); workers are killed
with SIGKILL as a crash would, and the whole server is stopped with SIGTERM as a service manager does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from helpers import until_listening
from helpers.http_servers import (
    SERVE,
    Server,
    bus_env,
    connect,
    hold_call,
    http_server,
    legacy_session,
    on_worker,
    session_headers,
)

from mcp_agentbus.server.workers import STOPS, Fleet, supervise

pytestmark = pytest.mark.anyio

BOUND = 30.0  # seconds any one wait below may take; each is far shorter on a quiet machine


@pytest.fixture(scope="module")
def served(redis_url_real: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = bus_env(redis_url_real, f"workers-{uuid.uuid4().hex[:12]}")
    with http_server(env, tmp_path_factory.mktemp("workers") / "serve.log", "--workers", "2") as server:
        wait_until(lambda: health(server)["workers"]["serving"] == 2, "both workers serve")  # one may lag
        yield server


def health(server: Server) -> dict[str, Any]:
    """One /healthz on a fresh connection, so any worker may answer it."""
    with httpx2.Client(timeout=5) as client:
        reply = client.get(server.healthz)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def workers_of(server: Server) -> set[int]:
    """The pids of the server's worker processes (the children of the process we started)."""
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    return {int(pid) for pid in children}


def wait_until(check: Any, what: str) -> Any:
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        seen = check()
        if seen:
            return seen
        time.sleep(0.1)
    pytest.fail(f"not within {BOUND} s: {what}")


def test_every_worker_answers_on_the_one_port_and_health_speaks_for_all(served: Server) -> None:
    answered: set[int] = set()
    deadline = time.monotonic() + BOUND
    while answered != {0, 1} and time.monotonic() < deadline:
        body = health(served)
        assert body["status"] == "ok"
        assert body["workers"]["serving"] == 2 and body["workers"]["of"] == 2
        answered.add(body["workers"]["answered_by"])
    assert answered == {0, 1}
    assert len(workers_of(served)) == 2


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_claims_over_many_connections_make_one_queue(served: Server, mode: str) -> None:
    """Each client is its own connection, so the kernel spreads them over both workers; legacy clients
    work too, whichever worker holds their session."""
    capability = f"cap-{uuid.uuid4().hex[:8]}"
    created: list[str] = []
    claimed: list[str] = []
    with anyio.fail_after(BOUND):
        async with connect(served, mode) as coordinator:
            for i in range(12):
                reply = await coordinator.ok("create_task", {"title": f"t{i}", "capability": capability})
                created.append(reply["task_id"])

        async def worker(n: int) -> None:
            async with connect(served, mode) as bus:
                while True:
                    reply = await bus.ok(
                        "claim_task", {"agent": f"w{n}", "capabilities": [capability], "wait_seconds": 0}
                    )
                    if reply["task"] is None:
                        return
                    claimed.append(reply["task"]["id"])
                    lease = reply["lease"]
                    await bus.ok(
                        "complete_task",
                        {
                            "agent": f"w{n}",
                            "task_id": reply["task"]["id"],
                            "lease_token": lease["lease_token"],
                        },
                    )

        async with anyio.create_task_group() as tg:
            for n in range(6):
                tg.start_soon(worker, n)
    assert sorted(claimed) == sorted(created)  # each task once: none lost, none doubled


def test_a_legacy_session_is_served_by_its_worker_whichever_a_request_reaches(served: Server) -> None:
    """The session names the worker that holds it; a request of it that reaches the other worker is
    passed on (answer, session id and all), so a legacy client keeps one session across connections."""
    session, owner = legacy_session(served)
    for slot in (owner, 1 - owner):
        with on_worker(served, slot) as client:
            call = {"name": "heartbeat", "arguments": {"agent": f"via-{slot}", "status": "busy"}}
            reply = client.post(
                served.mcp,
                json={"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": call},
                headers=session_headers(session),
            )
            assert reply.status_code == 200, reply.text
            assert reply.headers["content-type"].startswith("application/json")
            result = reply.json()["result"]
            assert (
                result["isError"] is False and result["structuredContent"]["agent"]["agent"] == f"via-{slot}"
            )
        with on_worker(served, slot) as client:  # the owner sees the request as sent: no Accept added
            del client.headers["accept"]
            bare = {k: v for k, v in session_headers(session).items() if k != "Accept"}
            assert client.get(served.mcp, headers=bare).status_code == 406
    with on_worker(served, 1 - owner) as client:  # ended from the other worker: gone from its own
        assert client.delete(served.mcp, headers=session_headers(session)).status_code == 200
    with on_worker(served, owner) as client:
        gone = client.post(
            served.mcp,
            json={"jsonrpc": "2.0", "id": 8, "method": "tools/list"},
            headers=session_headers(session),
        )
        assert gone.status_code == 404, gone.text
    served.assert_clean_log()


def test_a_legacy_subscription_streams_through_the_worker_a_get_reaches(served: Server) -> None:
    """The GET stream of a session, opened on the other worker, carries the updates of what the
    session subscribed to: the owner's stream, passed on as it comes."""
    session, owner = legacy_session(served)
    key = f"plan/{uuid.uuid4().hex[:8]}"
    uri = f"agentbus://state/{key}"
    with on_worker(served, owner) as client:
        subscribe = {"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": uri}}
        assert client.post(served.mcp, json=subscribe, headers=session_headers(session)).status_code == 200
    with (
        on_worker(served, 1 - owner) as listener,
        listener.stream(
            "GET", served.mcp, headers={**session_headers(session), "Accept": "text/event-stream"}
        ) as stream,
    ):
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        with httpx2.Client(timeout=5) as writer:
            call = {"name": "set_state", "arguments": {"agent": "writer", "key": key, "value": 1}}
            set_ = writer.post(
                served.mcp,
                json={"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": call},
                headers=session_headers(session),
            )
            assert set_.status_code == 200, set_.text
        deadline = time.monotonic() + BOUND
        for line in stream.iter_lines():
            if line.startswith("data:") and "notifications/resources/updated" in line:
                assert json.loads(line[5:])["params"]["uri"] == uri
                break
            assert time.monotonic() < deadline, "no update within the bound"

    def reopened() -> bool:
        """A session has one GET stream at a time (409 while one is open): the one passed on ended
        at the owner when its client hung up."""
        with on_worker(served, 1 - owner) as client:
            get = {**session_headers(session), "Accept": "text/event-stream"}
            with client.stream("GET", served.mcp, headers=get) as again:
                return again.status_code == 200

    wait_until(reopened, "the session's GET stream is free again")
    served.assert_clean_log()


def raw_on_worker(server: Server, slot: int) -> socket.socket:
    """A raw keep-alive connection the kernel gave to worker `slot` (asked of /healthz on it)."""
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % server.port)
        answer = b""
        while b"}}" not in answer:  # the body ends with the workers object
            answer += sock.recv(65536)
        if json.loads(answer.partition(b"\r\n\r\n")[2])["workers"]["answered_by"] == slot:
            return sock
        sock.close()
    pytest.fail(f"no connection reached worker {slot} within {BOUND} s")


def test_a_request_cut_off_mid_body_is_not_run_and_logs_no_traceback(served: Server) -> None:
    """A client that hangs up before its (chunked) request is whole: nothing is created, whether the
    worker it reached holds its session or passes it on, and the log says so in one line at most."""
    session, owner = legacy_session(served)
    for slot in (owner, 1 - owner):
        capability = f"cut-off-{uuid.uuid4().hex[:8]}"
        call = {
            "name": "create_task",
            "arguments": {"agent": "maker", "title": "cut off", "capability": capability},
        }
        body = json.dumps({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": call}).encode()
        with raw_on_worker(served, slot) as sock:
            head = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % served.port
            head += b"Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
            head += b"Mcp-Session-Id: %s\r\nMCP-Protocol-Version: 2025-11-25\r\n" % session.encode()
            sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(body), body))
            time.sleep(0.5)  # the whole JSON arrived; the last chunk never comes
        time.sleep(1.0)
        with httpx2.Client(timeout=5) as client:
            claim = {"name": "claim_task", "arguments": {"agent": "checker", "capabilities": [capability]}}
            reply = client.post(
                served.mcp,
                json={"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": claim},
                headers=session_headers(session),
            )
        assert reply.status_code == 200, reply.text
        assert reply.json()["result"]["structuredContent"]["task"] is None, f"it was run (worker {slot})"
    served.assert_clean_log()
    assert "Error handling POST request" not in served.log.read_text()


def test_a_killed_worker_is_reported_then_started_again(served: Server) -> None:
    victim = min(workers_of(served))
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: health(served)["workers"]["serving"] == 1, "health reports one worker of two")
    wait_until(lambda: health(served)["workers"]["serving"] == 2, "the killed worker serves again")
    pids = workers_of(served)
    assert victim not in pids and len(pids) == 2
    assert health(served)["status"] == "ok"
    log = served.log.read_text()
    assert "was killed by SIGKILL; starting it again" in log
    assert "Traceback" not in log


def test_a_stopped_worker_is_killed_and_started_again_and_what_waited_on_it_ends(
    redis_url_real: str, tmp_path: Path
) -> None:
    """A worker whose event loop stops turning (SIGSTOP here; a call that blocks it does the same) is
    killed once silent for --worker-timeout, and started again: a request of its session, passed on to
    it by the other worker, then ends with 502 instead of waiting for good, and the session is gone."""
    env = bus_env(redis_url_real, f"workers-{uuid.uuid4().hex[:12]}")
    with http_server(env, tmp_path / "serve.log", "--workers", "2", "--worker-timeout", "3") as server:
        wait_until(lambda: health(server)["workers"]["serving"] == 2, "both workers serve")
        sessions: dict[int, str] = {}

        def one_on_each() -> bool:
            session, owner = legacy_session(server)
            sessions[owner] = session
            return len(sessions) == 2

        wait_until(one_on_each, "a session held by each worker")
        victim = min(workers_of(server))
        os.kill(victim, signal.SIGSTOP)
        try:
            stopped = 1 - health(server)["workers"]["answered_by"]  # only the other one accepts now
            call = {"name": "heartbeat", "arguments": {"agent": "to-a-stopped-worker"}}
            with httpx2.Client(timeout=BOUND) as client:
                reply = client.post(
                    server.mcp,
                    json={"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": call},
                    headers=session_headers(sessions[stopped]),
                )
            assert reply.status_code == 502, reply.text
            assert reply.json()["error"]["data"]["error"]["code"] == "session_unavailable"
            wait_until(lambda: health(server)["workers"]["serving"] == 2, "the stopped worker serves again")
            assert victim not in workers_of(server)
            with on_worker(server, stopped) as client:
                gone = client.post(
                    server.mcp,
                    json={"jsonrpc": "2.0", "id": 10, "method": "tools/list"},
                    headers=session_headers(sessions[stopped]),
                )
            assert gone.status_code == 404, gone.text
        finally:
            with contextlib.suppress(ProcessLookupError):  # let a failed test's server stop
                os.kill(victim, signal.SIGCONT)
    log = (tmp_path / "serve.log").read_text()
    assert f"(pid {victim}) has not turned its event loop" in log, log
    assert "was killed by SIGKILL; starting it again" in log
    assert "Traceback" not in log


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_stops_every_worker_and_exits_cleanly(
    stop: signal.Signals, redis_url_real: str, tmp_path: Path
) -> None:
    env = bus_env(redis_url_real, f"workers-{uuid.uuid4().hex[:12]}")
    with http_server(env, tmp_path / "serve.log", "--workers", "3") as server:
        wait_until(lambda: health(server)["workers"]["serving"] == 3, "three workers serve")
        pids = workers_of(server)
        server.proc.send_signal(stop)
        assert server.proc.wait(timeout=BOUND) == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_a_stop_that_comes_just_before_a_worker_is_forked_reaches_it_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The supervisor itself, in this process: SIGTERM arrives after `start` looked for a stop and
    before it forks (here, as it blocks signals for the fork). The worker must get the SIGTERM, not be
    left running until the stop's deadline kills it."""
    block = signal.pthread_sigmask
    ends: list[int] = []
    reap = os.waitpid

    def stop_then_block(how: int, signals: Any) -> Any:
        if how == signal.SIG_BLOCK:
            os.kill(os.getpid(), signal.SIGTERM)
        return block(how, signals)

    def noting(pid: int, options: int) -> tuple[int, int]:
        reaped, status = reap(pid, options)
        if reaped:
            ends.append(os.waitstatus_to_exitcode(status))
        return reaped, status

    def run_worker(slot: int) -> int:
        time.sleep(BOUND)  # until a signal ends it
        return 0

    handlers = {sig: signal.getsignal(sig) for sig in STOPS}
    monkeypatch.setattr(signal, "pthread_sigmask", stop_then_block)
    monkeypatch.setattr(os, "waitpid", noting)
    try:
        supervise(Fleet.shared(1), run_worker, 1.0, socket.socket(), stuck_seconds=BOUND)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert ends == [-signal.SIGTERM], "the worker was killed at the deadline, not stopped"


async def test_a_stopping_server_refuses_new_connections_while_its_calls_finish(
    redis_url_real: str, tmp_path: Path
) -> None:
    """The parent closes its copy of the shared socket as it stops: once the workers have closed theirs,
    a new connection is refused at once, rather than queued until the last call has ended."""
    namespace = f"workers-{uuid.uuid4().hex[:12]}"
    holder = {"agent": "holder", "capabilities": ["nothing-comes"], "wait_seconds": 50}
    env = {**bus_env(redis_url_real, namespace), "AGENTBUS_MAX_WAIT_SECONDS": "60"}
    with http_server(env, tmp_path / "serve.log", "--workers", "2") as server:
        ended = anyio.Event()

        async def hold() -> None:
            await hold_call(server, holder)
            ended.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(hold)
            await until_listening(redis_url_real, namespace, "holder", listening=True)
            server.proc.send_signal(signal.SIGTERM)
            await anyio.to_thread.run_sync(
                wait_until, lambda: refuses(server.port), "a new connection refused"
            )
            assert not ended.is_set(), "refused only once the call had ended"
            tg.cancel_scope.cancel()  # the call is given up: its server ends
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--workers", "2"], "--workers is for --transport http"),
        (["--transport", "http", "--workers", "0"], "0 is not in the range 1<=x<=64"),
        (["--transport", "http", "--workers", "2", "--redis-url", "memory://"], "needs a shared Redis"),
    ],
)
def test_workers_refused_where_they_cannot_share_one_bus(flags: list[str], said: str, tmp_path: Path) -> None:
    env = bus_env("memory://", "refused")
    done = subprocess.run(
        [*SERVE, *flags], env=env, capture_output=True, text=True, timeout=BOUND, cwd=tmp_path
    )
    assert done.returncode != 0
    assert said in done.stderr
    assert "Traceback" not in done.stderr


def test_a_tmpdir_too_long_for_the_workers_sockets_ends_the_command_with_what_to_do(
    redis_url_real: str, tmp_path: Path
) -> None:
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    env = {**bus_env(redis_url_real, "deep"), "TMPDIR": str(deep)}
    argv = [*SERVE, "--transport", "http", "--port", "0", "--workers", "2"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=BOUND, cwd=tmp_path)
    assert done.returncode != 0
    assert "set TMPDIR to a shorter directory" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(deep.iterdir()) == [], "its socket directory is not left behind"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_already_taken_ends_the_command_with_an_error(
    workers: str, redis_url_real: str, served: Server, tmp_path: Path
) -> None:
    env = bus_env(redis_url_real, "taken")
    argv = [*SERVE, "--transport", "http", "--port", str(served.port), "--workers", workers]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=BOUND, cwd=tmp_path)
    assert done.returncode != 0
    assert "already in use" in done.stderr.lower()
    assert "Traceback" not in done.stderr
