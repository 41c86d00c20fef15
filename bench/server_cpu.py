"""Server CPU per tool call over streamable HTTP: the agentbus server beside the SDK's no-op server,
each answering with event streams (the default) and with plain JSON bodies (``--json-responses``);
and over stdio, beside the SDK's no-op server on agentbus' transport and on the SDK's own (no goal: the
issue's is for HTTP).

One client makes sequential calls (heartbeat; the no-op tool) in each protocol era; the server
process's CPU time (user + system, from /proc) over those calls, divided by their number, is the
figure. The goal: agentbus at most `GOAL_RATIO` x the no-op server's, in the same response mode. In
the event-stream mode agentbus answers a heartbeat with one JSON body all the same (a call that cannot
wait: `mcp_agentbus/server/json_answers.py`), as the issue proposed, while the SDK's no-op server answers
a legacy call with a stream and sets one up for a 2026-07-28 call (which it then answers with one body,
done within its 15 s); the JSON-body mode compares the two answering alike.
Beside them, the no-op server's tool that makes one Redis PING: what any tool that waits on one round
trip costs the SDK's server (the no-op tool never waits), so the part of agentbus's figure above it is
its own work.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from harness import Figure, Row
from mcp import Client, StdioServerParameters
from plan import Run
from processes import (
    HttpServer,
    agentbus_http_spec,
    child_pids,
    cpu_seconds,
    http_servers,
    noop_http_spec,
    stdio_servers,
)
from workloads import call, http_client

from mcp_agentbus.settings import Settings

GOAL_RATIO = 1.5
MODES = {"event streams": (), "JSON bodies": ("json",)}


async def server_cpu_section(run: Run) -> list[Row]:
    settings = run.namespace("server-cpu")
    calls = run.plan.server_cpu_calls
    with tempfile.TemporaryDirectory(prefix="agentbus-bench-cpu-") as tmp:
        workdir = Path(tmp)
        for mode, flags in MODES.items():
            agentbus_flags = ("--json-responses",) if flags else ()
            specs = [
                noop_http_spec(*flags, redis_url=settings.redis_url),
                agentbus_http_spec(settings, "(cpu)", workdir, *agentbus_flags),
            ]
            async with http_servers(run.warnings, specs, workdir) as (noop, agentbus):
                for era in ("legacy", "auto"):
                    floor = await cpu_per_call(noop, era, "noop", calls)
                    ping = await cpu_per_call(noop, era, "ping", calls)
                    ours = await cpu_per_call(agentbus, era, "heartbeat", calls)
                    section = f"server CPU per call: http {era}, {mode}"
                    answered = "" if flags else ", each answered with one JSON body (it cannot wait)"
                    run.figures += [
                        Figure(section, "no-op server", floor, "ms", f"CPU / {calls} sequential no-op calls"),
                        Figure(
                            section,
                            "no-op server, one PING",
                            ping,
                            "ms",
                            f"CPU / {calls} sequential calls of a tool making one Redis PING",
                        ),
                        Figure(
                            section,
                            "agentbus server",
                            ours,
                            "ms",
                            f"CPU / {calls} sequential heartbeats{answered}; {ours / floor:.2f}x the no-op's",
                            f"<={GOAL_RATIO:g}x no-op",
                            ours <= GOAL_RATIO * floor,
                        ),
                    ]
    await stdio_cpu(run, settings, calls)
    return []


async def stdio_cpu(run: Run, settings: Settings, calls: int) -> None:
    section = "server CPU per call: stdio legacy"
    sdk_noop, noop, agentbus = stdio_servers(settings)
    floor = await stdio_cpu_per_call(noop, "noop", calls)
    sdk_floor = await stdio_cpu_per_call(sdk_noop, "noop", calls)
    ours = await stdio_cpu_per_call(agentbus, "heartbeat", calls)
    run.figures += [
        Figure(
            section,
            "no-op server",
            floor,
            "ms",
            f"CPU / {calls} sequential no-op calls, stdin and stdout served as agentbus serves them",
        ),
        Figure(
            section,
            "no-op server, the SDK's transport",
            sdk_floor,
            "ms",
            f"CPU / {calls} sequential no-op calls, a worker thread per line read, write and flush",
        ),
        Figure(
            section,
            "agentbus server",
            ours,
            "ms",
            f"CPU / {calls} sequential heartbeats; {times(ours, floor)} the no-op server's, "
            f"{times(ours, sdk_floor)} the SDK's",
        ),
    ]


def times(ours: float, floor: float) -> str:
    """`ours` as a multiple of `floor`; CPU time comes in 10 ms ticks, so a short run may read none."""
    return f"{ours / floor:.2f}x" if floor else "(no tick to compare with)"


async def stdio_cpu_per_call(server: StdioServerParameters, tool: str, calls: int) -> float:
    """Milliseconds of a stdio server's CPU per call (the legacy era, as Claude Code speaks it)."""
    others = set(child_pids())
    async with Client(server, mode="legacy") as client:
        started = set(child_pids()) - others
        if len(started) != 1:
            raise RuntimeError(f"expected one new server process, found {sorted(started)}")
        pid = started.pop()
        for _ in range(max(10, calls // 10)):
            await call(client, tool, {})
        before = cpu_seconds(pid)
        for _ in range(calls):
            await call(client, tool, {})
        after = cpu_seconds(pid)
    if before is None or after is None:
        raise RuntimeError(f"no CPU time for the stdio server (pid {pid}) in /proc")
    return (after - before) / calls * 1000


async def cpu_per_call(server: HttpServer, era: str, tool: str, calls: int) -> float:
    """Milliseconds of the server's CPU per call, over `calls` sequential calls after a warm-up."""
    async with http_client(server, era) as client:
        for _ in range(max(10, calls // 10)):
            await call(client, tool, {})
        before = cpu_seconds(server.proc.pid)
        for _ in range(calls):
            await call(client, tool, {})
        after = cpu_seconds(server.proc.pid)
    if before is None or after is None:
        raise RuntimeError(f"no CPU time for {server.spec.name} (pid {server.proc.pid}) in /proc")
    return (after - before) / calls * 1000
