"""A server-side wait: capped by the server's maximum, ended early by a wake-up, and reporting
progress to the caller about once a second while it lasts. A caller's `still_allowed` (context.py) is
asked after every wake-up and tick, and raises to end a wait whose caller lost the right to it (a
revoked token), before the wait's final script runs."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import anyio

from mcp_agentbus.ids import seconds
from mcp_agentbus.redis.store import Store

ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None]]
PROGRESS_EVERY = 1.0  # seconds between progress notifications
STAY_SLACK = 2.0  # seconds a waiting agent's presence lasts beyond its wait: the last look and the reply


class Wait:
    """A call's server-side wait: what is left of it (capped by the server), its notices and progress.
    `notices` is the list the wait's result carries: it gets the cap's notice only once the wait has
    really run for the whole cap, having been asked for more (a wait answered sooner says nothing of
    the cap)."""

    def __init__(
        self, store: Store, wait_seconds: float, what: str, on_progress: ProgressCallback | None = None
    ) -> None:
        seconds(wait_seconds, "wait_seconds", allow_zero=True)
        max_wait = store.settings.max_wait_seconds
        watch = store.caller.watch
        self.notices: list[str] = []
        self._asked = wait_seconds if wait_seconds > max_wait else None
        self.seconds = min(wait_seconds, max_wait)
        if watch is not None and self.seconds > 0:  # a waiting agent works: its presence outlasts the wait
            watch.stay_ms = max(watch.stay_ms, math.ceil((self.seconds + STAY_SLACK) * 1000))
        self._what = what
        self._still_allowed = store.caller.still_allowed
        self._on_progress = on_progress
        self._started = anyio.current_time() if self.seconds else 0.0  # most calls do not wait: no clock

    def remaining(self) -> float:
        """Seconds left of the wait (≤ 0 once it is over: then, if more was asked, the cap's notice)."""
        left = self._started + self.seconds - anyio.current_time() if self.seconds else 0.0
        if left <= 0 and self._asked is not None:  # over, however it was spent (sleeping, subscribing)
            self.notices.append(
                f"wait_seconds={self._asked:g} is above this server's cap: waited {self.seconds:g} s, "
                "the most it waits."
            )
            self._asked = None  # said once
        return left

    async def sleep(self, woken: anyio.Event, at_most: float = math.inf) -> None:
        """Until `woken` is set, `at_most` seconds have passed, or the wait is over."""
        until = anyio.current_time() + min(self.remaining(), at_most)
        check = self._still_allowed
        while not woken.is_set() and (left := until - anyio.current_time()) > 0:
            with anyio.move_on_after(min(left, PROGRESS_EVERY)):
                await woken.wait()
            if check is not None:
                check()
            if self._on_progress is not None and not woken.is_set() and self.remaining() > 0:
                waited = min(anyio.current_time() - self._started, self.seconds)
                message = f"waiting for {self._what}: {waited:.0f} s of {self.seconds:g} s"
                await self._on_progress(waited, self.seconds, message)
        if check is not None:  # woken at once, or at the end: the caller looks again only if allowed
            check()
        self.remaining()  # the cap's notice, if the wait is over
