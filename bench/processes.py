"""The processes a run starts: a throwaway redis-server and MCP HTTP servers on free loopback ports,
each stopped when its section ends; and their CPU time."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from mcp import StdioServerParameters

from mcp_agentbus.settings import Settings

BENCH_DIR = Path(__file__).resolve().parent
AGENT = "bench-worker"
START_SECONDS = 20.0  # bound on an HTTP server process answering /healthz (it takes about one)
STOP_SECONDS = 10.0  # bound on a server process exiting after SIGTERM, and again after SIGKILL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not listen on port {port} within {seconds:g} s")


@contextmanager
def own_redis() -> Iterator[tuple[str, int]]:
    """A throwaway redis-server on a free loopback port, without persistence; stopped on exit.
    Yields its URL and process id."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench: redis-server is not on PATH; install it or pass --redis-url")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="agentbus-bench-") as workdir:
        command = [binary, "--bind", "127.0.0.1", "--port", str(port)]
        command += ["--save", "", "--appendonly", "no", "--dir", workdir]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, proc)
            yield f"redis://127.0.0.1:{port}/0", proc.pid
        finally:
            stop(proc)


@contextmanager
def redis_server(url: str | None) -> Iterator[tuple[str, int | None]]:
    """The Redis at `url`, or a throwaway one when none is given; and its process id if it is ours."""
    if url is not None:
        yield url, None
        return
    with own_redis() as own:
        yield own


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate `proc` and wait for it; kill it when it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_SECONDS)


# --- streamable HTTP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    """How to start one HTTP server process: a name for messages, its argv given a port, its env."""

    name: str
    argv: Callable[[int], list[str]]
    env: dict[str, str]


@dataclass
class HttpServer:
    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:  # refused, timed out, or an HTTP error status such as 503
            return False


def noop_http_spec(*flags: str, redis_url: str | None = None) -> ServerSpec:
    """The no-op server over HTTP; flag ``json`` answers with JSON bodies, not event streams. With
    `redis_url` it also has the tool ``ping`` (one Redis PING)."""
    script = str(BENCH_DIR / "noop_server.py")
    name = " ".join(("no-op HTTP server", *flags))
    env = {} if redis_url is None else {"NOOP_REDIS_URL": redis_url}
    return ServerSpec(name, lambda port: [sys.executable, script, "http", str(port), *flags], env)


def agentbus_http_spec(settings: Settings, name: str, workdir: Path, *flags: str) -> ServerSpec:
    """`agentbus serve --transport http` on the settings' Redis and namespace, with `flags`. The tokens
    file is a path that does not exist, so the server runs without authentication (on loopback only)."""

    def argv(port: int) -> list[str]:
        serve = [sys.executable, "-m", "mcp_agentbus", "serve", "--transport", "http"]
        return [*serve, "--host", "127.0.0.1", "--port", str(port), *flags]

    env = {**agentbus_env(settings), "AGENTBUS_TOKENS_FILE": str(workdir / "no-tokens.json")}
    return ServerSpec(f"agentbus HTTP server {name}", argv, env)


def agentbus_env(settings: Settings) -> dict[str, str]:
    """What an agentbus server process needs to serve the settings' namespace as AGENT."""
    return {
        "AGENTBUS_REDIS_URL": settings.redis_url,
        "AGENTBUS_NAMESPACE": settings.namespace,
        "AGENTBUS_AGENT": AGENT,
        "AGENTBUS_LOG_LEVEL": "WARNING",
    }


def stdio_params(args: list[str], env: dict[str, str] | None = None) -> StdioServerParameters:
    """A server subprocess on this Python; the SDK gives it a minimal environment, so PATH is passed on."""
    return StdioServerParameters(
        command=sys.executable, args=args, env={"PATH": os.environ.get("PATH", ""), **(env or {})}
    )


def stdio_servers(settings: Settings) -> tuple[StdioServerParameters, ...]:
    """The stdio servers compared: the SDK's no-op server, the same on agentbus' stdio transport, and
    agentbus (`settings` its namespace; the no-op servers' `ping` tool uses its Redis)."""
    noop_env = {"NOOP_REDIS_URL": settings.redis_url}
    return (
        stdio_params([str(BENCH_DIR / "noop_server.py")], noop_env),
        stdio_params([str(BENCH_DIR / "noop_server.py"), "pipes"], noop_env),
        stdio_params(["-m", "mcp_agentbus", "serve"], agentbus_env(settings)),
    )


def spawn(spec: ServerSpec, log: Path) -> HttpServer:
    """`spec` on a free loopback port; its stdout and stderr go to `log`."""
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), **spec.env}
    with log.open("wb") as out:
        proc = subprocess.Popen(spec.argv(port), stdout=out, stderr=subprocess.STDOUT, env=env)
    return HttpServer(spec, proc, port, log)


async def wait_healthy(server: HttpServer) -> bool:
    """Poll /healthz until it answers 200 (True), the process exits (False), or START_SECONDS pass."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return False
        if server.healthy():
            return True
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{server.spec.name} did not answer /healthz within {START_SECONDS:g} s")


def log_tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@asynccontextmanager
async def http_servers(
    warnings: list[str], specs: list[ServerSpec], logdir: Path
) -> AsyncIterator[list[HttpServer]]:
    """Every spec started at once, each healthy before this yields; all stopped on exit, even when the
    run fails. A port taken between picking it and binding it is picked again (three tries)."""
    servers: list[HttpServer] = []
    try:
        for i, spec in enumerate(specs):
            servers.append(spawn(spec, logdir / f"server-{i}.log"))
        for i, server in enumerate(servers):
            for _ in range(3):
                if await wait_healthy(server):
                    break
                if "address already in use" not in server.log.read_text(errors="replace").lower():
                    code = server.proc.returncode
                    raise RuntimeError(f"{server.spec.name} exited with code {code}:\n{log_tail(server.log)}")
                servers[i] = server = spawn(server.spec, server.log)
            else:
                raise RuntimeError(f"{server.spec.name}: no free port could be bound in three tries")
        yield servers
    finally:
        for server in servers:
            stop(server.proc)
        for server in servers:
            text = server.log.read_text(errors="replace")
            if "Traceback" in text or "Error executing tool" in text:
                warnings.append(f"{server.spec.name} logged an error:\n{log_tail(server.log)}")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` so far (Linux /proc); None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def cpu_snapshot(pids: dict[str, int | None]) -> dict[str, float]:
    return {name: t for name, pid in pids.items() if pid is not None and (t := cpu_seconds(pid)) is not None}


def child_pids(parent: int | None = None) -> list[int]:
    """The process ids of the children of `parent` (by default this process; Linux /proc)."""
    me, children = str(parent or os.getpid()), []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] == me:
                children.append(int(entry.name))
        except (OSError, IndexError):  # gone meanwhile
            continue
    return children


def cpu_clock(pids: dict[str, int | None], children: str | None = None) -> Callable[[], dict[str, float]]:
    """A clock of CPU seconds so far by process: each named one, and under the name `children` the sum
    of this process's other children (those alive now; for example N stdio servers)."""
    others = [pid for pid in child_pids() if pid not in pids.values()] if children else []

    def read() -> dict[str, float]:
        seconds = cpu_snapshot(pids)
        if children:
            seconds[children] = sum(cpu_seconds(pid) or 0.0 for pid in others)
        return seconds

    return read
