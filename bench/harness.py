"""Timing and reporting: bounded loops of timed steps, interleaved rounds, rows of percentiles compared
with their floors, and the tables they are printed as."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

# One step of an operation: gets the previous step's result (None for the first) and returns its own.
Step = Callable[[Any], Awaitable[Any]]

# --- budgets ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """A loop stops after `ops` operations or `seconds`, whichever comes first."""

    ops: int
    seconds: float

    def share(self, rounds: int) -> Budget:
        return Budget(math.ceil(self.ops / rounds), self.seconds / rounds)


@dataclass(frozen=True)
class Workload:
    """One operation made of steps (claim, complete), each timed on its own."""

    name: str
    steps: list[Step]
    step_names: tuple[str, ...]


Samples = list[list[float]]  # seconds, one list per step


async def run_steps(steps: list[Step], budget: Budget) -> Samples:
    samples: Samples = [[] for _ in steps]
    deadline = time.perf_counter() + budget.seconds
    done = 0
    while done < budget.ops and time.perf_counter() < deadline:
        value = None
        for step, times in zip(steps, samples, strict=True):
            start = time.perf_counter()
            value = await step(value)
            times.append(time.perf_counter() - start)
        done += 1
    return samples


async def interleave(workloads: list[Workload], budget: Budget, warmup: Budget, rounds: int) -> list[Samples]:
    """Warm each workload up, then run them in turn, `rounds` times, a share of `budget` each time; the
    samples of each workload, in order."""
    for workload in workloads:
        await run_steps(workload.steps, warmup)
    results: list[Samples] = [[[] for _ in w.steps] for w in workloads]
    for _ in range(rounds):
        for workload, result in zip(workloads, results, strict=True):
            new = await run_steps(workload.steps, budget.share(rounds))
            for series, more in zip(result, new, strict=True):
                series.extend(more)
    return results


# --- rows -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    max_ratio: float | None = None
    max_delta_ms: float | None = None

    def text(self) -> str:
        return f"<={self.max_ratio}x" if self.max_ratio is not None else f"<=+{self.max_delta_ms}ms"

    def met(self, ratio: float, delta_ms: float) -> bool:
        if self.max_ratio is not None:
            return ratio <= self.max_ratio
        return self.max_delta_ms is not None and delta_ms <= self.max_delta_ms


@dataclass(frozen=True)
class Row:
    section: str
    name: str
    n: int
    p50_ms: float
    p99_ms: float
    ops_per_s: float
    vs: str | None = None  # the floor this row is compared with
    ratio: float | None = None  # p50 / floor p50
    delta_ms: float | None = None  # p50 - floor p50
    goal: str | None = None
    goal_met: bool | None = None
    # Concurrent rows only: there n counts claim+complete pairs, p50/p99 are of one pair, and ops_per_s
    # is pairs completed by all agents together per second of wall time.
    agents: int | None = None
    processes: int | None = None
    calls_per_s: float | None = None  # tool calls per second of wall time: 2x ops_per_s
    speedup: float | None = None  # ops_per_s / the ops_per_s of row `vs`
    cores: dict[str, float] | None = None  # CPU seconds per wall second, by process


@dataclass(frozen=True)
class Figure:
    """A measured quantity that is not the latency of one call: memory, a rate, a lag under load."""

    section: str
    name: str
    value: float
    unit: str  # "bytes", "MB", "ms", "calls/s", ...
    how: str = ""  # what was done to get it, in a few words
    goal: str | None = None
    goal_met: bool | None = None


def make_row(
    section: str,
    name: str,
    samples: list[float],
    vs: Row | None = None,
    times: int = 1,
    goal: Goal | None = None,
) -> Row:
    """Stats of `samples`, compared with `times` x the p50 of row `vs`."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    p50, p99 = cuts[49] * 1000, cuts[98] * 1000
    row = Row(section, name, len(samples), p50, p99, len(samples) / sum(samples))
    if vs is None:
        return row
    floor = vs.p50_ms * times
    ratio, delta = p50 / floor, p50 - floor
    return replace(
        row,
        vs=f"{times}x {vs.name}" if times > 1 else vs.name,
        ratio=ratio,
        delta_ms=delta,
        goal=goal.text() if goal else None,
        goal_met=goal.met(ratio, delta) if goal else None,
    )


def operation_rows(
    section: str,
    label: str,
    workload: Workload,
    samples: Samples,
    step_floors: list[Row],
    operation_floor: tuple[Row, int],
    step_goal: Goal | None = None,
    operation_goal: Goal | None = None,
) -> list[Row]:
    """A row per step of `workload`, each against its floor; for a workload of several steps, one more
    for the whole operation (the sum of its steps, one operation at a time). A one-step operation is
    held to `operation_goal` when it has no `step_goal`."""
    name = f"{label} {workload.name}"
    if len(samples) == 1:
        goal = step_goal or operation_goal
        return [make_row(section, name, samples[0], *operation_floor, goal=goal)]
    rows = [
        make_row(section, f"{name} {step}", series, floor, goal=step_goal)
        for step, series, floor in zip(workload.step_names, samples, step_floors, strict=True)
    ]
    total = [sum(steps) for steps in zip(*samples, strict=True)]
    whole = f"{name} {'+'.join(workload.step_names)}"
    return [*rows, make_row(section, whole, total, *operation_floor, goal=operation_goal)]


# --- report -----------------------------------------------------------------------------------------

COLUMNS = ("section", "row", "n", "p50 ms", "p99 ms", "ops/s", "vs floor", "ratio", "diff ms", "goal")
NUMERIC_COLUMNS = {2, 3, 4, 5, 7, 8}


def cells(row: Row) -> tuple[str, ...]:
    goal = f"{row.goal} {'ok' if row.goal_met else 'MISSED'}" if row.goal else ""
    return (
        row.section,
        row.name,
        str(row.n),
        f"{row.p50_ms:.3f}",
        f"{row.p99_ms:.3f}",
        f"{row.ops_per_s:,.0f}",
        row.vs or "",
        f"{row.ratio:.2f}x" if row.ratio is not None else "",
        f"{row.delta_ms:+.3f}" if row.delta_ms is not None else "",
        goal,
    )


SWARM_COLUMNS = (
    "section",
    "row",
    "n",
    "p50 ms",
    "p99 ms",
    "pairs/s",
    "calls/s",
    "vs",
    "speedup",
    "CPU cores used",
)
SWARM_NUMERIC_COLUMNS = {2, 3, 4, 5, 6, 8}


def swarm_cells(row: Row) -> tuple[str, ...]:
    return (
        row.section,
        row.name,
        str(row.n),
        f"{row.p50_ms:.3f}",
        f"{row.p99_ms:.3f}",
        f"{row.ops_per_s:,.0f}",
        f"{row.calls_per_s or 0:,.0f}",
        row.vs or "",
        f"{row.speedup:.2f}x" if row.speedup is not None else "",
        " ".join(f"{name} {cores:.2f}" for name, cores in (row.cores or {}).items()),
    )


FIGURE_COLUMNS = ("section", "figure", "value", "unit", "goal", "how")
FIGURE_NUMERIC_COLUMNS = {2}


def figure_cells(figure: Figure) -> tuple[str, ...]:
    goal = f"{figure.goal} {'ok' if figure.goal_met else 'MISSED'}" if figure.goal else ""
    value = f"{figure.value:,.0f}" if abs(figure.value) >= 100 else f"{figure.value:,.3g}"
    return (figure.section, figure.name, value, figure.unit, goal, figure.how)


def table(rows: list[Row], figures: list[Figure]) -> str:
    """The latency rows in one table, the concurrent rows (if any) in a second one, the figures (if
    any) in a third."""
    tables = [render(COLUMNS, NUMERIC_COLUMNS, [cells(row) for row in rows if row.agents is None])]
    swarm = [swarm_cells(row) for row in rows if row.agents is not None]
    if swarm:
        tables.append(render(SWARM_COLUMNS, SWARM_NUMERIC_COLUMNS, swarm))
    if figures:
        tables.append(render(FIGURE_COLUMNS, FIGURE_NUMERIC_COLUMNS, [figure_cells(f) for f in figures]))
    return "\n\n".join(tables)


def render(columns: tuple[str, ...], numeric: set[int], body: list[tuple[str, ...]]) -> str:
    lines = [columns, *body]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "\n".join(table_line(line, widths, numeric) for line in lines)


def table_line(line: tuple[str, ...], widths: list[int], numeric: set[int]) -> str:
    padded = (
        cell.rjust(width) if i in numeric else cell.ljust(width)
        for i, (cell, width) in enumerate(zip(line, widths, strict=True))
    )
    return "  ".join(padded).rstrip()
