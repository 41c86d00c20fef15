"""The zero-config local bus: one ``redis-server`` per user, on a unix socket in the user's state
directory with AOF on, started by the first agentbus process that needs it and joined by every other.

``local://`` (the default Redis URL) means ``$XDG_STATE_HOME/agentbus`` (``~/.local/state/agentbus``);
``local:///some/dir`` names the directory. The server is daemonized so it outlives the process that
started it; ``agentbus local stop`` ends it. Starting is serialized by a file lock, so processes that
start at the same moment still end up on one server, never on two buses.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

LOCAL_SCHEME = "local://"
BINARIES = ("redis-server", "valkey-server")  # Valkey is the Redis fork some distributions now ship
# GUI apps (Claude Desktop) often run with a PATH that lacks where package managers put binaries.
WELL_KNOWN_DIRS = ("/opt/homebrew/bin", "/usr/local/bin", "/usr/bin", "/usr/sbin", "/snap/bin")
START_TIMEOUT = 10.0
MAX_SOCKET_PATH = 100  # sun_path is 104 bytes on macOS, 108 on Linux


class LocalBusError(Exception):
    """The local bus cannot be had; the message says what to do instead."""


def default_state_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "agentbus"


def find_server() -> str | None:
    """A redis-server to run: ``AGENTBUS_REDIS_SERVER``, else one on PATH or in a well-known place."""
    chosen = os.environ.get("AGENTBUS_REDIS_SERVER")
    if chosen:
        return chosen
    for name in BINARIES:
        found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(WELL_KNOWN_DIRS))
        if found:
            return found
    return None


@dataclass(frozen=True)
class LocalBus:
    """The managed redis-server of one state directory."""

    directory: Path

    @classmethod
    def from_url(cls, url: str) -> LocalBus:
        path = url.removeprefix(LOCAL_SCHEME)
        return cls(Path(path) if path else default_state_dir())

    @property
    def socket(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def _client(self) -> redis.Redis:
        # No retries: a local socket either answers or is not there, and SHUTDOWN drops the connection on
        # purpose (redis-py's default retries would spend seconds reconnecting to a server that is gone).
        return redis.Redis(
            unix_socket_path=str(self.socket),
            socket_timeout=2,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
        )

    def info(self) -> dict[str, Any] | None:
        """The server's INFO, or None when it is not running."""
        if not self.socket.exists():
            return None
        client = self._client()
        try:
            info: dict[str, Any] = client.info()
            return info
        except (redis.ConnectionError, redis.TimeoutError):
            return None
        finally:
            client.close()

    def join(self) -> str | None:
        """The URL of the running server, or None; never starts one."""
        return self.url if self.info() is not None else None

    def ensure(self) -> tuple[str, bool]:
        """The URL of the server, started if it is not running; and whether this call started it."""
        if (url := self.join()) is not None:
            return url, False
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._starting():
            if (url := self.join()) is not None:  # another process started it while we waited
                return url, False
            self._start()
        return self.url, True

    def stop(self) -> bool:
        """Shut the server down (AOF is flushed first); False when it was not running."""
        if self.join() is None:
            return False
        client = self._client()
        try:
            client.shutdown()
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        finally:
            client.close()
        return True

    @contextmanager
    def _starting(self) -> Iterator[None]:
        with open(self.directory / "start.lock", "w") as lock:
            deadline = time.monotonic() + START_TIMEOUT * 2
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LocalBusError(
                            f"another process has been starting the local bus in {self.directory} for too "
                            f"long; see {self.log}, or run `agentbus local stop` and try again"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _start(self) -> None:
        if len(str(self.socket).encode()) > MAX_SOCKET_PATH:
            raise LocalBusError(
                f"the local bus's socket path {self.socket} is too long for a unix socket; "
                "set XDG_STATE_HOME to a shorter directory, or AGENTBUS_REDIS_URL=local:///short/dir"
            )
        binary = find_server()
        if binary is None:
            raise LocalBusError(no_server_message())
        args = [
            binary,
            "--port", "0",  # no TCP: only this user, through the socket
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "yes",
            "--pidfile", str(self.directory / "redis.pid"),
            "--logfile", str(self.log),
        ]  # fmt: skip
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LocalBusError(f"could not run {binary}: {exc}.\n{no_server_message()}") from exc
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.join() is not None:
                return
            if done.returncode != 0:
                break
            time.sleep(0.02)
        raise LocalBusError(
            f"{binary} did not start a local bus in {self.directory} "
            f"(exit {done.returncode}: {(done.stderr or done.stdout).strip()[-300:] or 'no output'}). "
            f"Its log: {self.log}"
        )


def looking_url(url: str) -> str | None:
    """The URL a command that only reads should use: `url` itself, or for ``local://`` the running local
    bus (None when it is not running: reading must not start it)."""
    return LocalBus.from_url(url).join() if url.startswith(LOCAL_SCHEME) else url


def no_server_message() -> str:
    return (
        "no Redis is configured and no redis-server was found to run the local bus. Ways forward:\n"
        "  - install Redis: `sudo apt install redis-server` (Debian, Ubuntu), `brew install redis` (macOS),\n"
        "    `sudo dnf install valkey` (Fedora); or set AGENTBUS_REDIS_SERVER to a redis-server binary;\n"
        "  - point AGENTBUS_REDIS_URL (or --redis-url) at a running Redis, e.g. redis://127.0.0.1:6379/0;\n"
        "  - or --redis-url memory:// for a bus inside this one process (other processes will not see it)."
    )
