"""What the demo did: its outcome, counted from the event log, and the summary printed at the end."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.text import Text

from mcp_agentbus.cli.words import counted
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.workflow_views import WorkflowView

Events = list[tuple[str, dict[str, str]]]  # XRANGE of the event log


@dataclass
class Outcome:
    workflow: WorkflowView
    seconds: float
    out: Path
    url: str
    namespace: str
    topics: Counter[str]
    reclaimed: list[tuple[str, str]]  # (agent that lost it, task id)
    messages: list[dict[str, Any]] = field(default_factory=list)
    workers: int = 0
    bus_seconds: float = 0.0  # until the bus served MCP (on local://, starting its Redis if need be)
    joined_seconds: float | None = None  # until every worker process had started and heartbeated

    def took(self) -> str:
        """How long the run took and what the first part of it was spent on."""
        workers = counted(self.workers, "worker process", "worker processes")
        startup = f"{self.bus_seconds:.1f} s starting the bus"
        if self.joined_seconds is not None:
            startup += (
                f" and {self.joined_seconds - self.bus_seconds:.1f} s more until its {workers} had joined"
            )
        return f"in {self.seconds:.1f} s, including {startup}"


async def tally(bus: AgentBus) -> tuple[Counter[str], list[tuple[str, str]]]:
    """How many events of each topic, and each lease taken back (from whom, which task)."""
    entries = cast(Events, await bus.redis.xrange(bus.store.keys.events))
    topics = Counter(fields["topic"] for _, fields in entries)
    reclaimed = [
        (fields.get("agent", ""), json.loads(fields.get("data", "{}")).get("task", ""))
        for _, fields in entries
        if fields["topic"] == "task.reclaimed"
    ]
    return topics, reclaimed


def summary(outcome: Outcome) -> RenderableType:
    w = outcome.workflow
    by_id = {t.id: t for t in w.tasks}
    retried = [t for t in w.tasks if t.attempts > 1]
    lines = [
        f"[bold]{w.title}[/]: workflow {w.workflow_id} {w.status}, "
        f"{w.progress.done}/{w.progress.total} tasks done {outcome.took()}",
    ]
    for agent, task_id in outcome.reclaimed:
        task = by_id.get(task_id)
        if task is not None:
            lines.append(
                f"{agent} crashed holding [bold]{task.title}[/]; its lease expired, the reaper put the task "
                f"back, and {task.assignee} finished it on attempt {task.attempts}"
            )
    t = outcome.topics
    lines += [
        f"claims {t['task.claimed']}, completions {t['task.completed']}, leases taken back "
        f"{t['task.reclaimed']}, retried tasks {len(retried)}, lock grants {t['lock.acquired']}, messages "
        f"{t['message.sent']}, events published {t['demo.big_file']}, events in all {t.total()}",
        f"the coordinator's inbox: {counted(len(outcome.messages), 'message')}"
        + "".join(f"\n  {m['from']}: {m['subject']} — {m['body']}" for m in outcome.messages[:6]),
        f"report: {outcome.out / 'report.md'} · notes (written under a lock): {outcome.out / 'notes.md'} · "
        f"worker logs: {outcome.out / 'logs'}",
    ]
    report = (
        (outcome.out / "report.md").read_text(encoding="utf-8")
        if (outcome.out / "report.md").exists()
        else ""
    )
    return Group(Text.from_markup("\n".join(lines)), Text(), Markdown(report))
