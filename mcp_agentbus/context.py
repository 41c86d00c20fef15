"""What one call carries to every script it runs: its `Caller`, worked out once per tool call by the
server (``server/calls.py``) and passed down explicitly — ``AgentBus.acting(caller)`` is the call's
own view of the bus, whose store runs every script with it.

* the *watch* — the agent the call is made for: every script the call runs renews that agent's
  presence and appends its notices (unread messages, leases and locks about to expire, those taken
  back) to its reply (``lua/include/notices.lua``); the core turns them into sentences
  (``core/notices.py``);
* the *owner* — whose share of a namespace's bounds the call uses. A namespace's bounds on unfinished
  tasks, agent records, idle inboxes and held locks are shared by everyone in it; each owner may use
  only a share of each (``*_max_per_owner`` settings), so one token, or one runaway agent, cannot use
  them all up and lock every other one out. The owner is the token's grant (``token:<grant id>``) when
  the request carries a token, else the agent it acts as ('').

A call through the core API without `acting` is made for no one and charged to the agent it acts as.
"""

from __future__ import annotations

from collections.abc import Callable
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


@dataclass(frozen=True)
class Caller:
    """Who a call is made for (its `watch`, None for no one), whose share it uses (`owner`), and what a
    wait of it asks before it looks again (`still_allowed`: raises once the caller lost the right to
    it, e.g. its token was revoked; None = nothing to check)."""

    watch: Watch | None = None
    owner: str = ""
    still_allowed: Callable[[], None] | None = None


NOBODY = Caller()


def of_token(grant_id: str) -> str:
    """The owner of a call that came with a token: ``token:`` keeps it apart from every agent id
    (which has no ``:``)."""
    return f"token:{grant_id}"
