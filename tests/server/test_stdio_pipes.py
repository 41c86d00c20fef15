"""stdin and stdout read and written by the event loop (server/stdio.py), in subprocesses on real pipes:
framing, the bound on one message, stray output kept off the wire, the descriptors given back, and
the SDK's threads when stdin is not a pipe."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mcp_agentbus.server.stdio import MAX_LINE_BYTES

TIMEOUT = 30
WAIT_SECONDS = 10  # a claim's wait, far longer than a server takes to notice its client is gone
HELLO = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "by-hand", "version": "0"},
}

# Echoes every message it reads, printing and writing to fd 1 meanwhile as a careless library would;
# after the transport, writes to fd 1 again and says on stderr whether fd 1 blocks.
ECHO = textwrap.dedent(
    """
    import os, sys
    import anyio
    from mcp.shared.message import SessionMessage
    from mcp_agentbus.server.stdio import stdio_streams

    async def main():
        async with stdio_streams() as (read, write), write:
            async for message in read:
                print("stray print")
                sys.stdout.flush()
                os.write(1, b"stray write\\n")
                if not isinstance(message, Exception):
                    await write.send(SessionMessage(message.message))
        os.write(1, b"after\\n")
        sys.stderr.write(f"fd 1 blocks: {os.get_blocking(1)}\\n")

    anyio.run(main)
    """
)


def request(request_id: int | str, **params: Any) -> bytes:
    return (
        json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "ping", "params": params}).encode() + b"\n"
    )


def echo(tmp_path: Path, stdin: bytes, *, from_file: bool = False) -> tuple[list[str], str]:
    """Run ECHO on `stdin` (through a pipe, or a file); its stdout lines and its stderr."""
    script = tmp_path / "echo.py"
    script.write_text(ECHO)
    source: Any = subprocess.PIPE
    if from_file:
        (tmp_path / "stdin").write_bytes(stdin)
        source = (tmp_path / "stdin").open("rb")
    try:
        done = subprocess.run(
            [sys.executable, str(script)],
            input=None if from_file else stdin,
            stdin=source if from_file else None,
            capture_output=True,
            timeout=TIMEOUT,
            check=True,
        )
    finally:
        if from_file:
            source.close()
    return done.stdout.decode().splitlines(), done.stderr.decode()


def test_messages_cross_the_pipes_and_nothing_else_reaches_stdout(tmp_path: Path) -> None:
    last = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "ping"}).encode()  # no newline: stdin ends
    lines, stderr = echo(tmp_path, request(1) + request("two", note="é ✓") + last)
    assert [json.loads(line)["id"] for line in lines[:-1]] == [1, "two", 3]
    assert json.loads(lines[1])["params"] == {"note": "é ✓"}
    assert lines[-1] == "after"  # fd 1 is the wire again once the transport is done
    assert stderr.count("stray print") == 3 and stderr.count("stray write") == 3
    assert "fd 1 blocks: True" in stderr  # as it was: the pipe transport made it non-blocking


def test_a_message_over_the_bound_is_answered_with_an_error_and_the_next_one_served(tmp_path: Path) -> None:
    big = "x" * MAX_LINE_BYTES
    python_order = request(7, text=big)  # {"jsonrpc", "id", "method", "params"}
    typescript_order = json.dumps({"method": "ping", "params": {"text": big}, "jsonrpc": "2.0", "id": "ts-8"})
    not_answered = [  # no request id at the top level of either end: nothing is guessed
        {"method": "notify", "params": {"id": 1, "text": big}, "jsonrpc": "2.0"},  # a nested id only
        {"jsonrpc": "2.0", "id": 9, "result": {"text": big}},  # a response, not a request
    ]
    malformed = b'{"jsonrpc": "2.0", "id": 007, "method": "ping", "params": {"t": "' + big.encode() + b'"}}\n'
    stdin = b"".join(
        [
            request(1),
            python_order,
            request(2),
            typescript_order.encode() + b"\n",
            *(json.dumps(m).encode() + b"\n" for m in not_answered),
            malformed,
            request(3),
        ]
    )
    lines, stderr = echo(tmp_path, stdin)
    answers = [json.loads(line) for line in lines[:-1]]
    assert [a["id"] for a in answers] == [1, 7, 2, "ts-8", 3]
    for error in (answers[1]["error"], answers[3]["error"]):
        assert (
            error["code"] == -32600 and "MiB" in error["message"] and "nothing was done" in error["message"]
        )
    assert stderr.count("skipped a message over") == 5
    assert "Traceback" not in stderr


def test_stdin_from_a_file_is_read_by_the_sdks_threads(tmp_path: Path) -> None:
    lines, stderr = echo(tmp_path, request(1) + request(2), from_file=True)
    assert [json.loads(line)["id"] for line in lines[:-1]] == [1, 2]
    assert lines[-1] == "after"
    assert stderr.count("stray print") == 2


def test_one_socket_for_stdin_and_stdout_is_read_by_the_sdks_threads(tmp_path: Path) -> None:
    """As inetd (or systemd with Accept=yes) passes a connection: a request arriving makes the socket
    readable, which the event loop's pipe writer would take for the client gone."""
    script = tmp_path / "echo.py"
    script.write_text(ECHO)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            stdin=theirs.fileno(),
            stdout=theirs.fileno(),
            stderr=subprocess.PIPE,
        )
        theirs.close()
        try:
            ours.sendall(request(1) + request(2) + request(3))
            ours.shutdown(socket.SHUT_WR)  # the end of stdin
            received = b""
            ours.settimeout(TIMEOUT)
            while chunk := ours.recv(65_536):
                received += chunk
            _, stderr = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:  # only when the test failed: never leave it running
                proc.kill()
    lines = received.decode().splitlines()
    assert [json.loads(line)["id"] for line in lines[:-1]] == [1, 2, 3]
    assert lines[-1] == "after" and proc.returncode == 0
    assert stderr.count(b"stray print") == 3


def set_state_line(value_json: bytes) -> bytes:
    """Request 2, a set_state of key k, with `value_json` written in as it is."""
    head = b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"set_state","arguments":'
    return head + b'{"key":"k","value":' + value_json + b"}}}\n"


UNREADABLE = {
    "over the bound": (
        set_state_line(json.dumps("v" * MAX_LINE_BYTES).encode()),
        -32600,
        b"skipped a message",
    ),
    "nested too deep": (set_state_line(b"[" * 250 + b"]" * 250), -32700, b"recursion limit"),
    "a trailing comma": (set_state_line(b"[1,2,]"), -32700, b"trailing comma"),
    "a lone surrogate escape": (set_state_line(b'"\\ud800"'), -32700, b"hex escape"),
    "no JSON-RPC 2.0": (set_state_line(b"1").replace(b'"2.0"', b'"1.0"'), -32600, b"could not be read"),
}


# The SDK's threads (one socket) read a line of any length: the tool refuses a value over its bound.
WIRES = [
    (u, w)
    for u in UNREADABLE
    for w in ("two pipes", "one socket")
    if (u, w) != ("over the bound", "one socket")
]


@pytest.mark.parametrize(("unreadable", "wire"), WIRES)
def test_the_server_answers_a_call_it_cannot_read_and_serves_on(
    tmp_path: Path, unreadable: str, wire: str
) -> None:
    """`agentbus serve` on real pipes (read by the event loop) or one socket for stdin and stdout (read
    by the SDK's threads): a tool call it cannot read (over the bound, nested deeper than the SDK parses,
    not JSON, not JSON-RPC 2.0) gets a JSON-RPC error for its id, and is not run; the next is served."""
    line, code, logged = UNREADABLE[unreadable]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AGENTBUS_REDIS_URL": "memory://oversized",
        "AGENTBUS_AGENT": "by-hand",
    }
    messages: list[dict[str, Any]] = [
        {"id": 1, "method": "initialize", "params": HELLO},
        {"method": "notifications/initialized"},
    ]
    last = {"id": 3, "method": "tools/call", "params": {"name": "get_state", "arguments": {"key": "k"}}}
    stdin = b"".join(json.dumps({"jsonrpc": "2.0", **m}).encode() + b"\n" for m in messages)
    stdin += line + json.dumps({"jsonrpc": "2.0", **last}).encode() + b"\n"
    ours, theirs = socket.socketpair()
    with (
        ours,
        subprocess.Popen(
            [sys.executable, "-m", "mcp_agentbus", "serve"],
            stdin=subprocess.PIPE if wire == "two pipes" else theirs.fileno(),
            stdout=subprocess.PIPE if wire == "two pipes" else theirs.fileno(),
            stderr=subprocess.PIPE,
            env=env,
            cwd=tmp_path,
        ) as proc,
    ):
        theirs.close()
        if proc.stdin is not None:
            proc.stdin.write(stdin)
            proc.stdin.flush()
        else:
            ours.sendall(stdin)
        answers: dict[int, Any] = {}
        watchdog = threading.Timer(TIMEOUT, proc.kill)  # an answer that never comes ends the reading
        watchdog.start()
        try:
            with proc.stdout or ours.makefile("rb") as stdout:
                while 3 not in answers:
                    answer = stdout.readline()
                    assert answer, "the server closed stdout"
                    message = json.loads(answer)
                    answers[message["id"]] = message
            ours.shutdown(socket.SHUT_WR)
            _, stderr = proc.communicate(timeout=TIMEOUT)  # closes stdin: the server ends
        finally:
            watchdog.cancel()
            if proc.poll() is None:  # only when the test failed: never leave it running
                proc.kill()
    assert answers[2]["error"]["code"] == code, answers[2]
    assert "nothing was done" in answers[2]["error"]["message"]
    assert answers[3]["result"]["structuredContent"]["entries"] == []  # the set_state did nothing
    assert logged in stderr and b"Traceback" not in stderr


@pytest.mark.parametrize("closes", ["stdin and stdout", "stdout", "stdin"])
def test_a_client_that_goes_mid_call_ends_the_server_at_once(tmp_path: Path, closes: str) -> None:
    """A host that dies closes both pipes; one that closes only one of them is gone as well. The server
    gives up the claim it was waiting in and exits 0, well before the wait would have ended."""
    with subprocess.Popen(
        [sys.executable, "-m", "mcp_agentbus", "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={
            "PATH": os.environ.get("PATH", ""),
            "AGENTBUS_REDIS_URL": "memory://gone",
            "AGENTBUS_AGENT": "a",
        },
        cwd=tmp_path,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        waits = {
            "name": "claim_task",
            "arguments": {"capabilities": ["nobody"], "wait_seconds": WAIT_SECONDS},
        }
        for message in (
            {"id": 1, "method": "initialize", "params": HELLO},
            {"method": "notifications/initialized"},
            {"id": 2, "method": "tools/call", "params": waits},
        ):
            proc.stdin.write(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["id"] == 1
        time.sleep(0.5)  # the claim waits
        if "stdout" in closes:
            proc.stdout.close()
        if "stdin" in closes:
            proc.stdin.close()
        started = time.monotonic()
        try:
            returncode = proc.wait(timeout=WAIT_SECONDS)
        finally:
            if proc.poll() is None:  # only when the test failed: never leave it running
                proc.kill()
        assert proc.stderr is not None
        stderr = proc.stderr.read()
    assert time.monotonic() - started < WAIT_SECONDS / 2
    assert returncode == 0
    assert b"Traceback" not in stderr
