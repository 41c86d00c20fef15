"""The demo's bus, coordinator and view: an agentbus HTTP server in this process (on the embedded store
unless a Redis URL is given), a coordinator that creates the workflow over MCP, worker processes that
do it, a live view of the bus while they work, and a summary at the end."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import uvicorn
from anyio.abc import Process
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from rich.console import Console, RenderableType
from rich.live import Live

from mcp_agentbus.cli.views import Section, render, take
from mcp_agentbus.cli.words import counted
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.demo.analysis import source_files
from mcp_agentbus.demo.outcome import Events, Outcome, tally
from mcp_agentbus.demo.worker import Agent, DemoFailed
from mcp_agentbus.ids import MAX_DEPENDENCIES
from mcp_agentbus.server.http import build_app
from mcp_agentbus.settings import Settings

TIMEOUT = 75.0  # the demo takes well under a minute; past this something is wrong
TICK = 0.25
SHOWN_TOPICS = (
    "agent.",
    "task.claimed",
    "task.completed",
    "task.reclaimed",
    "message.sent",
    "workflow.",
    "demo.",
)


async def run_demo(
    root: Path, out: Path, *, workers: int, pace: float, limit: int, redis_url: str | None, console: Console
) -> Outcome:
    files = source_files(root, min(limit, MAX_DEPENDENCIES))  # the merge task depends on each of them
    if not files:
        raise DemoFailed(f"there are no Python files under {root} to analyse; pass --dir with some")
    settings = Settings(
        redis_url=redis_url or f"memory://demo-{uuid.uuid4().hex}",
        namespace=f"demo-{time.strftime('%H%M%S')}",
        reaper_interval_seconds=TICK,
        retry_backoff_seconds=0.2,
        max_wait_seconds=5,
    )
    (out / "logs").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    async with serving(settings) as url, AgentBus.open(settings, reaper=False) as bus:
        bus_seconds = time.monotonic() - started
        console.print(
            f"[bold]agentbus demo[/]: {counted(len(files), 'file')} of {root} · "
            f"{counted(workers, 'worker process', 'worker processes')} · "
            f"MCP at {url} · namespace {settings.namespace}"
        )
        async with Client(streamable_http_client(url), mode="legacy") as client:
            coordinator = Agent(client, "coordinator")
            await coordinator("heartbeat", status="coordinating", ttl_seconds=120)
            created = await coordinator(
                "create_workflow",
                title=f"Analyse {root.name}",
                tasks=[
                    *(
                        {
                            "key": f"analyse-{n}",
                            "title": f,
                            "capability": "analyse",
                            "payload": {"path": f, "crash": n == 1},  # whoever claims it first dies
                        }
                        for n, f in enumerate(files, 1)
                    ),
                    {
                        "key": "merge",
                        "title": "Merge the findings into one report",
                        "capability": "merge",
                        "depends_on": [f"analyse-{n}" for n in range(1, len(files) + 1)],
                    },
                ],
            )
            workflow_id = created["workflow_id"]
            async with spawned(url, root, out, workers, pace) as procs:
                messages, joined_at = await follow(bus, coordinator, workflow_id, procs, console)
                await leave(procs)
            await coordinator("heartbeat", status="done", ttl_seconds=1)
        workflow = (await bus.workflows.get(workflow_id)).workflow
        assert workflow is not None
        topics, reclaimed = await tally(bus)
    joined = None if joined_at is None else joined_at - started
    return Outcome(
        workflow, time.monotonic() - started, out, url, settings.namespace, topics, reclaimed, messages,
        workers, bus_seconds, joined,
    )  # fmt: skip


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    """The bus over streamable HTTP on a loopback port of this process (no tokens: loopback only)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = build_app(settings, tokens=None)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    stopped = anyio.Event()

    async def run() -> None:
        try:
            await server.serve([sock])
        finally:
            stopped.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(15):
            while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
                await anyio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            # A graceful stop even when the demo failed: cancelling uvicorn mid-lifespan logs tracebacks.
            server.should_exit = True
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await stopped.wait()
    sock.close()


@asynccontextmanager
async def spawned(url: str, root: Path, out: Path, workers: int, pace: float) -> AsyncIterator[list[Process]]:
    """The worker processes; whatever is left at the end is killed."""
    procs = []
    try:
        for n in range(1, workers + 1):
            command = [
                sys.executable, "-m", "mcp_agentbus.demo.worker",
                "--url", url, "--agent", f"worker-{n}", "--root", str(root), "--out", str(out),
                "--pace", str(pace),
            ]  # fmt: skip
            with (out / "logs" / f"worker-{n}.log").open("w") as log:
                procs.append(await anyio.open_process(command, stdout=log, stderr=subprocess.STDOUT))
        yield procs
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
            with anyio.move_on_after(5, shield=True):
                await proc.wait()


async def follow(
    bus: AgentBus, coordinator: Agent, workflow_id: str, procs: list[Process], console: Console
) -> tuple[list[dict[str, Any]], float | None]:
    """Show the bus until the workflow finishes (or every worker has stopped): a live view on a terminal,
    event lines otherwise. The coordinator reads its inbox meanwhile. Returns its messages and when
    (time.monotonic) every worker had joined the bus."""
    messages: list[dict[str, Any]] = []
    joined_at = None
    workers = {f"worker-{n}" for n in range(1, len(procs) + 1)}
    last_event = "0-0"
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    try:
        if live is not None:
            live.start()
        with anyio.fail_after(TIMEOUT):
            while True:
                inbox = await coordinator("read_inbox", limit=50)
                messages += inbox["messages"]
                snap = await take(bus, workflow_id=workflow_id, events=6)
                if joined_at is None and workers <= {a.agent for a in snap.agents}:
                    joined_at = time.monotonic()
                if live is not None:
                    live.update(
                        render(snap, title="agentbus demo", fit=True, extra=_inbox(messages)), refresh=True
                    )
                else:
                    last_event = await _print_events(bus, last_event, console)
                if snap.workflow is not None and snap.workflow.status != "running":
                    return messages, joined_at
                if all(proc.returncode is not None for proc in procs):
                    raise DemoFailed("every worker stopped before the workflow finished")
                await anyio.sleep(TICK)
    except TimeoutError:
        raise DemoFailed(f"the workflow did not finish within {TIMEOUT:.0f} s; see the worker logs") from None
    finally:
        if live is not None:
            live.stop()


async def leave(procs: list[Process]) -> None:
    """Workers leave by themselves once no workflow runs; give them a moment."""
    with anyio.move_on_after(10):
        for proc in procs:
            await proc.wait()


def _inbox(messages: list[dict[str, Any]]) -> Section:
    """The coordinator's messages, the latest first (a view cut short keeps those)."""
    rows: list[tuple[RenderableType, ...]] = [
        (m["from"], f"{m['subject']} — {m['body']}") for m in reversed(messages)
    ]
    return Section(
        "Coordinator's inbox",
        ("from", "message"),
        rows,
        wide=("message",),
        empty="coordinator's inbox: empty",
    )


async def _print_events(bus: AgentBus, after: str, console: Console) -> str:
    """Print the events since `after` that tell the story; the id of the last one seen."""
    entries = cast(Events, await bus.redis.xrange(bus.store.keys.events, min=f"({after}", count=1000))
    for event_id, fields in entries:
        topic = fields["topic"]
        if topic.startswith(SHOWN_TOPICS):
            console.print(
                f"{fields.get('agent', ''):>12}  {topic:<16} {fields.get('data', '')[:90]}", markup=False
            )
        after = event_id
    return after
