"""Whose share of a namespace's bounds a call uses: its *owner*.

A namespace's bounds on unfinished tasks, agent records, idle inboxes and held locks are shared by
everyone in it; each owner may use only a share of each (``*_max_per_owner`` settings), so one token,
or one runaway agent, cannot use them all up and lock every other one out. The owner of a call is its
token's grant (``token:<grant id>``) when the request carries a token, else the agent it acts as. The
server sets it per tool call (``server.py``), like the notices of ``notices.py``; scripts get it with
the bounds (``store.common_argv``), and a call run outside any (the core API) is charged to the agent it
acts as.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[str] = ContextVar("agentbus_owner", default="")


def of_token(grant_id: str) -> str:
    """The owner of a call that came with a token: ``token:`` keeps it apart from every agent id
    (which has no ``:``)."""
    return f"token:{grant_id}"


@contextmanager
def charging(owner: str) -> Iterator[None]:
    """Charge what the enclosed calls create to `owner` ('' = to the agent each acts as)."""
    token = _current.set(owner)
    try:
        yield
    finally:
        _current.reset(token)


def current() -> str:
    return _current.get()
