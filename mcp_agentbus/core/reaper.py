"""The reaper: a periodic sweep that takes back expired leases and locks, promotes due tasks and notices
agents that went silent. Every server process runs the loop; a Redis key lets one sweep at a time."""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass

import anyio

from mcp_agentbus.outages import Outage
from mcp_agentbus.redis.replies import REAP
from mcp_agentbus.redis.store import Store

logger = logging.getLogger(__name__)

BATCH = 100  # bounds the work of one script call, so Redis is never blocked for long


@dataclass
class Sweep:
    """What one sweep did, summed over its batches (for the log)."""

    reclaimed: int = 0
    locks_expired: int = 0
    promoted: int = 0
    gone: int = 0
    cascaded: int = 0  # tasks cancelled or unblocked by cascades that earlier calls left queued


class Reaper:
    """Takes back what the dead left: expired leases and locks, gone agents, due delayed tasks, and
    cascades a call left unfinished. One process of a namespace holds the role at a time."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.id = uuid.uuid4().hex
        interval = store.settings.reaper_interval_seconds
        # Another process takes over within a few intervals after the current reaper stops.
        self._guard_ms = math.ceil(max(3 * interval, 2.0) * 1000)

    async def sweep(self) -> Sweep | None:
        """One full sweep; None when another process holds the reaper role."""
        total = Sweep()
        while True:
            reaped = await self._store.run(REAP, self.id, self._guard_ms, BATCH)
            if reaped is None:
                return None
            total.reclaimed += reaped.reclaimed
            total.locks_expired += reaped.locks_expired
            total.promoted += reaped.promoted
            total.gone += reaped.gone
            total.cascaded += reaped.cascaded
            if not reaped.more:
                return total

    async def run(self) -> None:
        """Sweep every interval until cancelled. Whatever a sweep fails of (Redis full, busy, gone, or a
        bug), the loop goes on: the failure is logged once, and sweeps are retried with a backoff."""
        interval = self._store.settings.reaper_interval_seconds
        outage = Outage(
            f"the reaper of namespace {self._store.settings.namespace}", logger, first_delay=interval
        )
        while True:
            delay = interval
            try:
                swept = await self.sweep()
                outage.recovered()
                if swept and (swept.reclaimed or swept.locks_expired or swept.gone):
                    logger.info("reaper: %s", swept)
            except Exception as exc:  # a dead reaper would leave every lease unexpired
                delay = outage.failed(exc)
            await anyio.sleep(delay)
