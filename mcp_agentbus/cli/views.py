"""What `agentbus status`, `agentbus watch` and the demo show: a snapshot of one namespace, read without
changing anything, and how it looks in a terminal."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from mcp_agentbus.cli.words import counted
from mcp_agentbus.core.workflow_views import WorkflowView

# The snapshot is read by the web dashboard (server floor) too: one reading, shown two ways.
from mcp_agentbus.server.dashboard_data import DeadTask as DeadTask
from mcp_agentbus.server.dashboard_data import Snapshot as Snapshot
from mcp_agentbus.server.dashboard_data import take as take

TASK_ORDER = ("claimed", "dead", "delayed", "ready", "blocked", "done", "cancelled")  # the busiest first
STATE_STYLE = {
    "done": "green",
    "claimed": "cyan",
    "ready": "yellow",
    "delayed": "magenta",
    "blocked": "dim",
    "dead": "bold red",
    "cancelled": "dim red",
    "running": "cyan",
    "failed": "bold red",
}


def render(
    snap: Snapshot, *, title: str | None = None, fit: bool = False, extra: Section | None = None
) -> View:
    """Everything at a glance: agents, workflows (one of them task by task), queues, locks, dead tasks
    and the latest events; `fit` keeps it within the terminal's height (for live views)."""
    return View(snap, title or "agentbus", fit, extra)


@dataclass(frozen=True)
class Section:
    """A titled list of rows that a view may cut short (the latest or the most telling rows first)."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[RenderableType, ...]]
    wide: tuple[str, ...] = ()  # columns that take the room left, each cut to one line with an ellipsis
    empty: str = ""  # said instead of the table when there are no rows


@dataclass(frozen=True)
class View:
    snap: Snapshot
    title: str
    fit: bool
    extra: Section | None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        snap, width = self.snap, options.max_width
        alive = sum(a.alive for a in snap.agents)
        running = sum(w.status == "running" for w in snap.workflows)
        clock = f" · {_clock(snap.now_ms)}" if width >= WIDE else ""  # narrow: the counts matter more
        yield Text.assemble(
            (self.title, "bold"),
            f"  {snap.namespace}{clock} · {counted(alive, 'agent')} alive · "
            f"{counted(running, 'workflow')} running",
            no_wrap=True,
            overflow="ellipsis",
        )
        sections = [_agents(snap), _workflows(snap, width)]
        if snap.workflow is not None:
            sections.append(_tasks(snap.workflow, width))
        sections += [_locks(snap), _dead(snap), _events(snap)]
        if self.extra is not None:
            sections.append(self.extra)
        sections = [s for s in sections if s.rows or s.empty]
        compact = self.fit and console.height < LOOSE_HEIGHT
        budget = None
        if self.fit:  # what is left for rows once the header, the queues and each table's head are drawn
            head = 1 if compact else 3
            budget = console.height - 2 - sum(head if s.rows else 1 for s in sections)
        for section, rows in zip(sections, _share([len(s.rows) for s in sections], budget), strict=True):
            yield _table(section, rows, compact, console, options)
            if section.title == "Workflows":
                yield _queues(snap)


LOOSE_HEIGHT = 40  # from this many lines a live view keeps the tables' titles and rules


def _share(sizes: list[int], budget: int | None) -> list[int]:
    """How many rows each section shows: all of them, or one more each in turn until `budget` is spent
    (so every section shows its first rows before any shows many)."""
    if budget is None:
        return sizes
    shown = [0] * len(sizes)
    while budget > 0 and any(n < size for n, size in zip(shown, sizes, strict=True)):
        for i, size in enumerate(sizes):
            if budget > 0 and shown[i] < size:
                shown[i] += 1
                budget -= 1
    return shown


def _table(
    section: Section, rows: int, compact: bool, console: Console, options: ConsoleOptions
) -> RenderableType:
    if not section.rows:
        return Text(section.empty, style="dim")
    if not rows:  # no room left in a live view: say what is not shown
        return Text(
            f"{section.title}: {len(section.rows)} not shown (a taller terminal shows them)", style="dim"
        )
    # Compact: one header line. Otherwise the title, the header and its rule (no edges): three lines, as
    # the budget counts; and at least the title's width, or it would wrap.
    table = Table(box=None, pad_edge=False, header_style="bold underline") if compact else Table(
        title=section.title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
        min_width=len(section.title),
    )  # fmt: skip
    for column in section.columns:  # the first wide column gets the most room
        ratio = len(section.wide) - section.wide.index(column) if column in section.wide else None
        table.add_column(column, no_wrap=True, overflow="ellipsis", ratio=ratio)
    cut = rows < len(section.rows)
    for row in section.rows[: rows - 1 if cut else rows]:
        table.add_row(*(_cell(value) for value in row))
    # Too wide for the terminal: the wide columns give way (cut with an ellipsis), the others keep their
    # width; otherwise each column takes what it needs (piped output is never padded out to the width).
    table.expand = table.__rich_measure__(console, options).maximum > options.max_width
    if not cut:
        return table
    left = len(section.rows) - rows + 1  # on a line of its own, so that no column widens for it
    return Group(table, Text(f"… {left} more: {section.title.lower()}", style="dim"))


def _agents(snap: Snapshot) -> Section:
    rows: list[tuple[RenderableType, ...]] = []
    for a in sorted(snap.agents, key=lambda a: not a.alive):
        status = Text(
            a.status if a.alive or a.status == "gone" else f"gone ({a.status})",
            style="" if a.alive else "dim red",
        )
        seen = f"{_ago(snap.now_ms, a.last_seen)} ago" if a.last_seen else ""
        rows.append((a.agent, status, " ".join([*a.tasks, *a.locks]), seen))
    return Section(
        "Agents", ("agent", "status", "holds", "last seen"), rows, wide=("holds",),
        empty="no agents (an agent appears with its first heartbeat)",
    )  # fmt: skip


def _workflows(snap: Snapshot, width: int) -> Section:
    rows: list[tuple[RenderableType, ...]] = []
    for w in snap.workflows:
        p = w.progress
        rows.append((
            w.workflow_id, w.title, Text(w.status, style=STATE_STYLE.get(w.status, "")),
            _bar(p.done, p.total, 16 if width >= WIDE else 8), str(p.claimed), str(p.ready + p.delayed),
            Text(str(p.dead), style="bold red" if p.dead else ""),
        ))  # fmt: skip
    columns = ("workflow", "title", "status", "progress", "claimed", "ready", "dead")
    return Section("Workflows", columns, rows, wide=("title",), empty="no workflows")


WIDE = 100  # from this many columns the views add what a narrow terminal leaves out


def _tasks(workflow: WorkflowView, width: int) -> Section:
    """The busiest first: held ones, then those retried (the story of a crash), then the rest by state."""
    tasks = sorted(
        workflow.tasks, key=lambda t: (t.state != "claimed", t.attempts < 2, TASK_ORDER.index(t.state))
    )
    rows: list[tuple[RenderableType, ...]] = []
    for t in tasks:
        state = t.state + (f" {t.progress.percent:.0f}%" if t.progress else "")  # how far its holder came
        row: tuple[RenderableType, ...] = (
            t.key or t.id, t.title, Text(state, style=STATE_STYLE.get(t.state, "")), t.assignee or "",
            f"{t.attempts}/{t.max_attempts}" if t.attempts else "",
        )  # fmt: skip
        note = t.error or t.summary or (t.progress.message if t.progress else "")
        rows.append((*row, note) if width >= WIDE else row)
    columns = ("task", "title", "state", "agent", "attempt", *(("note",) if width >= WIDE else ()))
    return Section(f"Tasks of {workflow.workflow_id}", columns, rows, wide=("title", "note"))


def _queues(snap: Snapshot) -> RenderableType:
    ready = ", ".join(f"{cap} {n}" for cap, n in sorted(snap.ready.items())) or "none"
    return Text.assemble(
        ("Queues  ", "bold"),
        f"ready: {ready} · delayed {snap.delayed} · claimed {snap.claimed} · ",
        (f"dead {snap.dead_total}", "bold red" if snap.dead_total else ""),
    )


def _locks(snap: Snapshot) -> Section:
    rows: list[tuple[RenderableType, ...]] = []
    for lock in snap.locks:
        expires = f"{-_age_s(snap.now_ms, lock.expires_at):.0f} s" if lock.expires_at else ""
        rows.append((lock.resource, lock.holder, str(lock.fencing_token), expires))
    return Section("Locks", ("resource", "holder", "fence", "expires in"), rows, wide=("resource",))


def _dead(snap: Snapshot) -> Section:
    rows: list[tuple[RenderableType, ...]] = [
        (d.id, d.title, str(d.attempts), Text(d.error, style="red")) for d in snap.dead
    ]
    columns = ("task", "title", "attempts", "last error")
    return Section(f"Dead tasks ({snap.dead_total})", columns, rows, wide=("title", "last error"))


def _events(snap: Snapshot) -> Section:
    """The latest first, so a view cut short keeps them."""
    rows: list[tuple[RenderableType, ...]] = []
    for e in reversed(snap.events):
        data = "" if e.data is None else json.dumps(e.data, ensure_ascii=False)
        rows.append((e.at[11:19], e.topic, e.agent or "", data))
    return Section("Events", ("at", "topic", "agent", "data"), rows, wide=("data",))


# What agents write (a status, a title, an error) is shown, never obeyed: C0 and C1 control characters
# (a terminal's escape sequences among them) are written as \x1b, and a string is no rich markup.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _cell(value: RenderableType) -> RenderableType:
    if isinstance(value, str):
        return Text(_CONTROL.sub(_escaped, value))
    if isinstance(value, Text) and _CONTROL.search(value.plain):
        return Text(_CONTROL.sub(_escaped, value.plain), style=value.style)
    return value


def _escaped(control: re.Match[str]) -> str:
    return f"\\x{ord(control.group()):02x}"


def _bar(done: int, total: int, width: int) -> Text:
    filled = round(width * done / total) if total else 0
    return Text.assemble(("█" * filled, "green"), ("░" * (width - filled), "dim"), f" {done}/{total}")


def _age_s(now_ms: int, iso_time: str) -> float:
    return now_ms / 1000 - datetime.fromisoformat(iso_time).timestamp()


def _ago(now_ms: int, iso_time: str) -> str:
    return f"{max(0.0, _age_s(now_ms, iso_time)):.0f} s"


def _clock(now_ms: int) -> str:
    return datetime.fromtimestamp(now_ms / 1000).strftime("%H:%M:%S")
