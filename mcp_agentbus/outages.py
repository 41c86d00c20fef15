"""Keeping long-running work alive through failures, with a log that stays readable while they last.

Redis may be full, busy with a long script, restarting or paused for minutes. A background loop (the
reaper, the wake-up subscription, resource push) must not end because one of its steps failed, and
the log must not repeat the same warning twice a second. An `Outage` follows the failures of one kind
of step: it logs the first, reminds once a minute while they go on, says when the step works again,
and gives the time to wait before the next try (doubling up to a cap), so a loop neither dies nor spins.
"""

from __future__ import annotations

import logging
import time

from mcp_agentbus.errors import AgentBusError

REMIND_EVERY = 60.0  # seconds between reminders that a failure goes on


class Outage:
    def __init__(
        self, what: str, logger: logging.Logger, *, first_delay: float = 0.5, max_delay: float = 5.0
    ) -> None:
        self._what = what
        self._logger = logger
        self._first_delay = first_delay
        self._max_delay = max_delay
        self.failures = 0
        self._since = 0.0
        self._said = -REMIND_EVERY  # when a line was last logged
        self._told = False  # the outage going on was logged, so its end is said too
        self._unsaid = 0  # outages since the last line, each over before a minute had passed

    def failed(self, exc: BaseException) -> float:
        """Record a failure (logged if it is the first one a minute after the last line, or a minute
        has passed); the seconds to wait before trying again. Outages that come and go within a minute
        of a line (one caller refused while another is served) are counted, and named with the next."""
        now = time.monotonic()
        self.failures += 1
        if self.failures == 1:
            self._since = now
            self._told = now - self._said >= REMIND_EVERY
            if not self._told:
                self._unsaid += 1
                return self._first_delay
            self._said = now
            # An error that is not ours to expect (neither Redis's nor a refusal) is a bug: keep its trace.
            expected = isinstance(exc, AgentBusError | OSError) or type(exc).__module__.startswith("redis")
            also = f" ({self._unsaid} short outage(s) before it)" if self._unsaid else ""
            self._unsaid = 0
            self._logger.warning(
                "%s failed: %s; retrying until it works%s",
                self._what,
                describe(exc),
                also,
                exc_info=not expected,
            )
        elif now - self._said >= REMIND_EVERY:
            self._said, self._told = now, True
            self._logger.warning(
                "%s still failing after %.0f s (%d tries): %s",
                self._what,
                now - self._since,
                self.failures,
                describe(exc),
            )
        return min(self._max_delay, self._first_delay * 2.0 ** min(self.failures - 1, 30))

    def recovered(self) -> None:
        """The step worked: say so once if its failing was said."""
        if self.failures and self._told:
            self._said = time.monotonic()
            self._logger.warning(
                "%s works again after %.0f s (%d failed tries)",
                self._what,
                self._said - self._since,
                self.failures,
            )
        self.failures = 0


def describe(exc: BaseException) -> str:
    detail = exc.message if isinstance(exc, AgentBusError) else str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
