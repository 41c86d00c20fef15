"""The per-call context: what the server works out once per tool call and the floors below read.

Two things ride along with a call without being passed through every core method:

* the *watch* — the agent whose notices (unread messages, leases and locks about to expire, those taken
  back) every script the call runs appends to its reply (``lua/include/notices.lua``); the core turns
  them into sentences (``core/notices.py``);
* the *owner* — whose share of a namespace's bounds the call uses. A namespace's bounds on unfinished
  tasks, agent records, idle inboxes and held locks are shared by everyone in it; each owner may use
  only a share of each (``*_max_per_owner`` settings), so one token, or one runaway agent, cannot use
  them all up and lock every other one out. The owner is the token's grant (``token:<grant id>``) when
  the request carries a token, else the agent it acts as ('').

The server sets both per tool call (``server/app.py``); ``redis/store.py`` reads them for every script.
A call run outside any (the core API) is watched for no one and charged to the agent it acts as.
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
    stay_ms: int = 0  # how long the call may wait: the agent's presence lasts at least that long

    def add(self, notices: list[Any]) -> None:
        """The notices a script appended to its reply."""
        *self.state, lost = notices
        self.lost += lost


_watch: ContextVar[Watch | None] = ContextVar("agentbus_notices", default=None)
_owner: ContextVar[str] = ContextVar("agentbus_owner", default="")


@contextmanager
def watching(agent: str, *, unread: bool = True) -> Iterator[Watch]:
    """Collect `agent`'s notices along with every script the enclosed call runs."""
    watch = Watch(agent, unread)
    token = _watch.set(watch)
    try:
        yield watch
    finally:
        _watch.reset(token)


def watched() -> Watch | None:
    """The watch of the call in progress, if any."""
    return _watch.get()


def of_token(grant_id: str) -> str:
    """The owner of a call that came with a token: ``token:`` keeps it apart from every agent id
    (which has no ``:``)."""
    return f"token:{grant_id}"


@contextmanager
def charging(owner: str) -> Iterator[None]:
    """Charge what the enclosed calls create to `owner` ('' = to the agent each acts as)."""
    token = _owner.set(owner)
    try:
        yield
    finally:
        _owner.reset(token)


def owner() -> str:
    """The owner the call in progress is charged to ('' = the agent it acts as)."""
    return _owner.get()
