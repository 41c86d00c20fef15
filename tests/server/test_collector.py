"""A serving process sets Python's garbage collector for a server's load (`server/collector.py`): real
`agentbus serve` processes, stdio and HTTP, report the collector as they served, on their way out."""

from __future__ import annotations

import ast
import signal
import sys
from pathlib import Path

from helpers.commands import run
from helpers.examples import wait_until
from helpers.http_servers import bus_env, fresh, http_server

from mcp_agentbus.server.collector import YOUNG_THRESHOLD

# `agentbus` as its console script runs it, which also says how the collector is set and how many
# objects are frozen out of its collections: on SIGUSR1 while it serves, and when it ends.
REPORTING = (
    "import atexit, gc, signal, sys\n"
    "report = lambda *_: print('collector:', gc.get_threshold(), gc.get_freeze_count(), file=sys.stderr)\n"
    "atexit.register(report)\n"
    "signal.signal(signal.SIGUSR1, report)\n"
    "from mcp_agentbus.cli.main import main\n"
    "sys.argv[0] = 'agentbus'\n"
    "main()\n"
)
DEFAULT_OLDER = (10, 10)  # Python's thresholds of the two older generations, left as they are


def reported_collector(stderr: str) -> tuple[tuple[int, int, int], int]:
    line = next(line for line in stderr.splitlines() if line.startswith("collector: "))
    threshold, frozen = line.removeprefix("collector: ").rsplit(" ", 1)
    return ast.literal_eval(threshold), int(frozen)


def test_a_stdio_server_collects_young_objects_in_large_batches_and_freezes_what_it_loaded() -> None:
    proc = run(
        [sys.executable, "-c", REPORTING, "serve"], AGENTBUS_REDIS_URL="memory://", AGENTBUS_AGENT="solo"
    )
    assert proc.returncode == 0, proc
    assert proc.stdout == ""  # the protocol channel carries nothing but the protocol
    threshold, frozen = reported_collector(proc.stderr)
    assert threshold == (YOUNG_THRESHOLD, *DEFAULT_OLDER)
    assert frozen > 10_000  # the MCP stack and pydantic's models, loaded before serving


def test_an_http_server_collects_young_objects_in_large_batches_and_freezes_what_it_loaded(
    redis_url_real: str, tmp_path: Path
) -> None:
    """The HTTP server as it runs under load: `bench/heartbeats.py` measures what this buys."""
    script = tmp_path / "reporting_agentbus.py"
    script.write_text(REPORTING)
    log = tmp_path / "server.log"
    env = bus_env(redis_url_real, fresh("collector"))
    with http_server(env, log, serve=[sys.executable, str(script), "serve"]) as server:
        server.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: "collector: " in log.read_text(), "the server to report its collector")
    threshold, frozen = reported_collector(log.read_text())
    assert threshold == (YOUNG_THRESHOLD, *DEFAULT_OLDER)
    assert frozen > 10_000
