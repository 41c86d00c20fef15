"""Notices: what an agent should know now, attached to the results of its tool calls — unread
messages, its leases and locks about to expire, and those taken back from it.

They cost no extra round trip: while a tool call is being *watched* for an agent, every script it
runs appends that agent's notices to its reply (``lua/include/notices.lua``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Watch:
    agent: str
    unread: bool = True  # read_inbox reports unread messages itself
    state: list[Any] | None = None  # [unread, newest, expiring] as of the last script the call ran
    lost: list[str] = field(default_factory=list)  # taken back, told once: gathered over every script

    def add(self, notices: list[Any]) -> None:
        """The notices a script appended to its reply."""
        *self.state, lost = notices
        self.lost += lost


_current: ContextVar[Watch | None] = ContextVar("agentbus_notices", default=None)


@contextmanager
def watching(agent: str, *, unread: bool = True) -> Iterator[Watch]:
    """Collect `agent`'s notices along with every script the enclosed call runs."""
    watch = Watch(agent, unread)
    token = _current.set(watch)
    try:
        yield watch
    finally:
        _current.reset(token)


def current() -> Watch | None:
    return _current.get()


def lines(watch: Watch | None) -> list[str]:
    """The notices of a watched call, as sentences for the agent."""
    if watch is None or watch.state is None:
        return []
    unread, newest, expiring = watch.state
    out = []
    if watch.unread and int(unread):
        line = f"{unread} unread message(s) in your inbox"
        if newest:
            sender, text = newest
            line += f", newest from {sender}: {_quote(text)}"
        out.append(line + " (read_inbox).")
    for i in range(0, len(expiring), 3):
        kind, name, ms_left = expiring[i : i + 3]
        held = f"lease on task {name}" if kind == "task" else f"lock on {name}"
        out.append(f"Your {held} expires in {int(ms_left) / 1000:.0f} s: heartbeat to keep it.")
    for what in watch.lost:
        kind, _, name = what.partition(" ")
        if kind == "task":
            out.append(
                f"Your lease on task {name} expired and the task was taken back: stop work on it "
                "(complete_task would get lease_lost)."
            )
        else:
            out.append(f"Your lock on {name} expired and was taken back: re-acquire it before writing more.")
    return out


def _quote(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return f"'{text[: limit - 1]}…'" if len(text) > limit else f"'{text}'"
