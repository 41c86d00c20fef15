"""What `status`, `watch` and the demo's live view show at 80×24, 100 and wide terminals: a demo-like
namespace (built through the core API) rendered by rich as a terminal of that size would draw it."""

from __future__ import annotations

import json
import os
import re
import sys

import anyio
import pytest
from rich.console import Console

from mcp_agentbus.cli.views import Section, Snapshot, render, take
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio
FILES = [f"mcp_agentbus/server/tools_{name}.py" for name in ("coordination", "messages", "tasks", "events")]
BIG = {"file": "mcp_agentbus/server/tools_coordination.py", "lines": 412, "functions": 17, "note": "x" * 80}


async def demo_like(bus: AgentBus) -> Snapshot:
    """A coordinator and four workers on a workflow: worker-1 crashed holding analyse-1 and worker-2
    finished it on attempt 2, worker-3 is on analyse-3 holding the notes lock, one file is done."""
    await bus.presence.heartbeat("coordinator", status="coordinating", ttl_seconds=120)
    for n in range(1, 5):
        await bus.presence.heartbeat(f"worker-{n}", capabilities=["analyse"], ttl_seconds=1 if n == 1 else 60)
    tasks = [{"key": f"analyse-{n}", "title": f, "capability": "analyse"} for n, f in enumerate(FILES, 1)]
    created = await bus.workflows.create("coordinator", title="Analyse mcp_agentbus", tasks=tasks)
    first = await bus.tasks.claim("worker-1", lease_seconds=1)
    assert first.task is not None and first.task.key == "analyse-1"
    with anyio.fail_after(10):  # worker-1 "crashes": the reaper takes its lease back
        while (await bus.workflows.get(created.workflow_id)).workflow.tasks[0].state != "ready":  # type: ignore[union-attr]  # noqa: ASYNC110 (the reaper's sweep has no event to wait on)
            await anyio.sleep(0.1)
    with anyio.fail_after(10):  # and, holding nothing now, is reported gone after its 1 s ttl
        while "worker-1" in [a.agent for a in (await bus.presence.list_agents()).agents if a.alive]:  # noqa: ASYNC110
            await anyio.sleep(0.1)
    retry = await bus.tasks.claim("worker-2", task_id=first.task.id)
    assert retry.lease is not None
    await bus.tasks.complete(
        "worker-2", first.task.id, retry.lease.lease_token, summary="412 lines, 17 functions"
    )
    await bus.tasks.claim("worker-3", task_id=created.task_ids["analyse-3"])
    third = {"task_id": created.task_ids["analyse-3"], "percent": 40, "message": "2 of 5 sections"}
    await bus.presence.heartbeat("worker-3", progress=third)
    await bus.locks.acquire("worker-3", "file:notes.md", ttl_seconds=30)
    await bus.events.publish("worker-2", "demo.big_file", BIG)
    return await take(bus, workflow_id=created.workflow_id, events=6)


def draw(
    snap: Snapshot, width: int, height: int = 24, *, fit: bool = True, extra: Section | None = None
) -> str:
    console = Console(width=width, height=height, record=True, color_system=None)
    console.print(render(snap, title="agentbus demo", fit=fit, extra=extra))
    return console.export_text()


async def test_at_80_by_24_the_live_view_fits_and_shows_the_crash_and_the_retry(bus: AgentBus) -> None:
    snap = await demo_like(bus)
    inbox = Section("Coordinator's inbox", ("from", "message"), [("worker-2", "took over analyse-1")])
    text = draw(snap, 80, extra=inbox)
    lines = text.splitlines()
    assert len(lines) <= 24 and max(map(len, lines)) <= 80, text
    for agent in ("coordinator", "worker-1", "worker-2", "worker-3", "worker-4"):
        assert re.search(rf"^{agent} ", text, re.M), text  # whole ids, never one letter
    assert re.search(r"^worker-1 +gone", text, re.M), text  # the crashed one
    assert re.search(r"^analyse-1 .*done +worker-2 +2/3", text, re.M), text  # finished on attempt 2
    assert re.search(r"^analyse-3 .*claimed 40% +worker-3", text, re.M), text  # with its progress
    assert "file:notes.md" in text and "took over analyse-1" in text, text
    events = re.findall(r"^(\d\d:\d\d:\d\d) +([a-z_.]+) ", text, re.M)
    assert events and events[0][1] == "demo.big_file", text  # the latest first, time and topic whole
    assert "…" in text  # the long event data is cut to its line, not wrapped


async def test_a_wider_terminal_shows_the_task_notes_and_whole_event_data(bus: AgentBus) -> None:
    snap = await demo_like(bus)
    at_100 = draw(snap, 100)
    assert "note" in at_100 and "412 lines, 17 functions" in at_100, at_100
    assert "2 of 5 sections" in at_100, at_100  # a claimed task's latest progress message
    wide = draw(snap, 240, height=60)
    assert '"note": "' + "x" * 80 + '"}' in wide, wide  # the whole JSON, on one line
    assert "Tasks of wf-" in wide and "Events" in wide  # room for the tables' titles
    for height in (40, 41):  # tall enough for the titles: they count in what fits
        tall = draw(snap, 120, height=height, extra=Section("Inbox", ("m",), [("x",)] * 30))
        assert len(tall.splitlines()) <= height and "Tasks of wf-" in tall, tall


async def test_a_live_view_says_what_a_short_terminal_leaves_out(bus: AgentBus) -> None:
    snap = await demo_like(bus)
    text = draw(snap, 80, height=12)
    assert len(text.splitlines()) <= 12, text
    assert "more" in text or "not shown" in text, text
    everything = draw(snap, 80, fit=False)  # `status` prints it all and lets the terminal scroll
    assert all(f"analyse-{n}" in everything for n in range(1, 5)), everything


async def test_piped_status_keeps_every_line_whole(bus: AgentBus, settings: Settings) -> None:
    """Not a terminal: no row is wrapped or cut, so each event's JSON is on its one line."""
    if settings.redis_url.startswith("memory://"):
        pytest.skip("another process cannot look into memory://; the redis half runs this")
    snap = await demo_like(bus)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}
    env |= {"AGENTBUS_REDIS_URL": settings.redis_url, "AGENTBUS_NAMESPACE": settings.namespace}
    env["COLUMNS"] = "80"
    command = [sys.executable, "-m", "mcp_agentbus", "status", "--workflow", snap.workflow.workflow_id]  # type: ignore[union-attr]
    with anyio.fail_after(60):
        done = await anyio.run_process(command, env=env, check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr
    big = next(line for line in out.splitlines() if "demo.big_file" in line)
    assert json.loads(big[big.index("{") :].rstrip()) == BIG, big
    assert "…" not in out, out
    assert max(map(len, out.splitlines())) < len(big) + 10, out  # and nothing padded out to a width


async def test_what_agents_write_is_shown_never_obeyed_by_the_terminal(bus: AgentBus) -> None:
    """A status that sets the terminal's title and clears the screen, a task title with rich markup
    that would not even parse, a C1 control: shown escaped, as text, in a real terminal's output."""
    hostile = "busy\x1b]0;pwned\x07\x1b[2J\x1b[31mRED\x00"
    await bus.presence.heartbeat("b-evil", status=hostile[:64], ttl_seconds=60)
    await bus.workflows.create("b-evil", title="w", tasks=[{"key": "a", "title": "[/closes] nothing \x9b2J"}])
    snap = await take(bus)
    console = Console(width=200, height=60, record=True, force_terminal=True, color_system="standard")
    console.print(render(snap))
    out = console.export_text(styles=True)
    assert "\x1b]0;" not in out and "\x1b[2J" not in out and "\x9b" not in out and "\x00" not in out
    assert "busy\\x1b]0;pwned" in out and "\\x1b[2J\\x1b[31mRED" in out
    assert "[/closes] nothing \\x9b2J" in out
