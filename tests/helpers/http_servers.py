"""Real HTTP server processes on a Redis, and raw requests to them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import redis
from mcp import Client
from mcp.client.session import MessageHandlerFnT
from mcp.client.streamable_http import streamable_http_client

from helpers import free_port
from helpers.examples import stop
from helpers.mcp_session import Bus
from mcp_agentbus.server.tokens import TokensFile

SERVE = [sys.executable, "-m", "mcp_agentbus", "serve"]


# Seconds a server process may take to answer /healthz: about one on a quiet machine, but the suite's
# parallel workers (make test) on a busy 2-core machine have seen over 20.
START_BOUND = 60.0


ERA = {"legacy": "2025-11-25", "auto": "2026-07-28"}


INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "by-hand", "version": "0"},
    },
}


POST_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp(self) -> str:
        return f"{self.base}/mcp"

    @property
    def healthz(self) -> str:
        return f"{self.base}/healthz"

    def assert_clean_log(self) -> None:
        text = self.log.read_text()
        assert "Traceback" not in text, text
        assert "Error executing tool" not in text, text


def _wait_healthy(proc: subprocess.Popen[bytes], port: int) -> bool:
    """Poll /healthz (bounded) until it answers 200; False when the process exited first."""
    deadline = time.monotonic() + START_BOUND
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return True
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"the server on port {port} did not become healthy within {START_BOUND} s")


@contextmanager
def http_server(
    env: dict[str, str], log: Path, *flags: str, serve: Sequence[str] = SERVE
) -> Iterator[Server]:
    """`agentbus serve --transport http` (or `serve`, another command that runs it) on a free loopback
    port, healthy, terminated on exit; its stdout and stderr go to `log`. A port taken between picking it
    and binding it is picked again."""
    for _ in range(3):
        port = free_port()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*serve, "--transport", "http", "--host", "127.0.0.1", "--port", str(port), *flags],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=log.parent,
            )
        try:
            if _wait_healthy(proc, port):
                yield Server(proc, port, log)
                return
            text = log.read_text()
            if "address already in use" not in text.lower():
                pytest.fail(f"the server exited with {proc.returncode}:\n{text}")
        finally:
            stop(proc)
    pytest.fail("no free port could be bound in three tries")


@pytest.fixture(name="guarded")
def guarded_server(redis_url_real: str, tmp_path: Path) -> Iterator[tuple[Server, TokensFile]]:
    """A server process that needs tokens from the start (its file holds one of another namespace),
    and its tokens file, to add the test's own tokens to."""
    tokens = TokensFile(tmp_path / "tokens.json")
    tokens.create(namespace=fresh("other"), agent="someone", role="all")
    env = {**bus_env(redis_url_real, fresh("dash")), "AGENTBUS_TOKENS_FILE": str(tokens.path)}
    with http_server(env, tmp_path / "server.log") as running:
        yield running, tokens
        running.assert_clean_log()


def bus_env(redis_url: str, namespace: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        # coverage's own variables, so a server process the tests start is measured too (pyproject)
        **{name: value for name, value in os.environ.items() if name.startswith("COVERAGE_")},
        "AGENTBUS_REDIS_URL": redis_url,
        "AGENTBUS_NAMESPACE": namespace,
        "AGENTBUS_AGENT": "http-default",
        "AGENTBUS_MAX_WAIT_SECONDS": "5",
        "AGENTBUS_REAPER_INTERVAL_SECONDS": "0.2",
        "AGENTBUS_TOKENS_FILE": "/nonexistent/agentbus/tokens.json",  # no auth, whatever the user has
    }


@asynccontextmanager
async def connect(
    server: Server, mode: str, message_handler: MessageHandlerFnT | None = None
) -> AsyncIterator[Bus]:
    """A client session to `server` over streamable HTTP, with the tools' output schemas."""
    transport = streamable_http_client(server.mcp)
    async with Client(transport, mode=mode, message_handler=message_handler) as client:
        assert client.protocol_version == ERA[mode]
        listed = await client.list_tools()
        schemas = {t.name: t.output_schema for t in listed.tools if t.output_schema is not None}
        yield Bus(client, schemas)


def modern_call(tool: str, arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A complete 2026-07-28 tools/call (no session, no handshake): body and headers."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": ERA["auto"],
        "io.modelcontextprotocol/clientInfo": {"name": "by-hand", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": meta},
    }
    headers = {
        **POST_HEADERS,
        "mcp-protocol-version": ERA["auto"],
        "mcp-method": "tools/call",
        "mcp-name": tool,
    }
    return body, headers


async def hold_call(server: Server, arguments: dict[str, Any]) -> None:
    """A 2026-07-28 claim_task that waits, answered with one JSON body when its wait ends: it keeps a
    stopping server in its shutdown grace until then (the SDK closes event streams at once). What it
    ends with is not the test's."""
    body, headers = modern_call("claim_task", arguments)
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(10, read=None)) as http:
        with suppress(httpx2.HTTPError):
            await http.post(server.mcp, json=body, headers=headers)


def fresh(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@contextmanager
def throwaway_redis(workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A redis-server of this test's own, on a free loopback port, stopped on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed")
    port = free_port()
    args = ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [binary, *args, "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail("the throwaway redis-server did not start")
                time.sleep(0.05)
        yield proc, url
    finally:
        client.close()
        stop(proc)


def post_initialize(server: Server, host: str | None = None) -> httpx2.Response:
    headers = dict(POST_HEADERS)
    if host is not None:
        headers["Host"] = host
    return httpx2.post(server.mcp, json=INIT, headers=headers, timeout=5)


def legacy_session(server: Server) -> tuple[str, int]:
    """A new legacy session (initialize, then initialized), its id and the worker it names."""
    with httpx2.Client(timeout=5) as client:
        opened = client.post(server.mcp, json=INIT, headers=POST_HEADERS)
        assert opened.status_code == 200, opened.text
        session = opened.headers["mcp-session-id"]
        named = re.fullmatch(r"w(\d)-[0-9a-f]{32}", session)
        assert named is not None, session
        headers = {**POST_HEADERS, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
        done = client.post(
            server.mcp, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
        )
        assert done.status_code == 202, done.text
    return session, int(named.group(1))


@contextmanager
def on_worker(server: Server, slot: int) -> Iterator[httpx2.Client]:
    """A client whose one keep-alive connection the kernel gave to worker `slot` (asked of /healthz)."""
    deadline = time.monotonic() + START_BOUND
    while time.monotonic() < deadline:
        with httpx2.Client(timeout=10, limits=httpx2.Limits(max_connections=1)) as client:
            if client.get(server.healthz).json()["workers"]["answered_by"] == slot:
                yield client
                return
    pytest.fail(f"no connection reached worker {slot} within {START_BOUND} s")


@asynccontextmanager
async def on_worker_async(server: Server, slot: int) -> AsyncIterator[httpx2.AsyncClient]:
    """`on_worker` for async tests: an async client whose one connection reached worker `slot`."""
    with anyio.fail_after(START_BOUND):
        while True:
            limits = httpx2.Limits(max_connections=1)
            async with httpx2.AsyncClient(timeout=httpx2.Timeout(10, read=None), limits=limits) as client:
                if (await client.get(server.healthz)).json()["workers"]["answered_by"] == slot:
                    yield client
                    return


def session_headers(session: str) -> dict[str, str]:
    return {**POST_HEADERS, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
