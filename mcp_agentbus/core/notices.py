"""Notices: what an agent should know now, attached to the results of its tool calls — unread
messages, its leases and locks about to expire, and those taken back from it.

They cost no extra round trip: every script that a call made for an agent runs (``AgentBus.acting``,
context.py) appends that agent's notices to its reply (``lua/include/notices.lua``); this module turns
them into sentences.
"""

from __future__ import annotations

from mcp_agentbus.context import Watch


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
        task, _, cancelled = name.partition(" cancelled: ")  # cancel_task's, with its reason
        if kind == "task" and cancelled:
            out.append(
                f"Task {task}, whose lease you held, was cancelled ({cancelled}): stop work on it "
                "(complete_task would get lease_lost)."
            )
        elif kind == "task":
            out.append(
                f"Your lease on task {name} expired and the task was taken back: stop work on it "
                "(complete_task would get lease_lost)."
            )
        elif kind == "revoked":  # revoke_lock's 'revoked <by> <resource>': a person freed it
            by, _, resource = name.partition(" ")
            out.append(
                f"Your lock on {resource} was revoked by {by} and may be someone else's now: stop writing "
                "under it, and re-acquire it (a new fencing token) before writing more."
            )
        else:
            out.append(f"Your lock on {name} expired and was taken back: re-acquire it before writing more.")
    return out


def _quote(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return f"'{text[: limit - 1]}…'" if len(text) > limit else f"'{text}'"
