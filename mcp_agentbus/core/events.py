"""Events: the namespace's durable log (a Redis Stream). The bus's scripts append an event for every
state change; agents publish their own topics and read the log by cursor, optionally waiting."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from mcp_agentbus.core.models import EventView, PublishResult, ReadEventsResult, iso
from mcp_agentbus.core.tasks import idempotency_scope
from mcp_agentbus.core.waiting import ProgressCallback, Wait
from mcp_agentbus.core.wakeups import Wakeups, event_topics, news_for
from mcp_agentbus.errors import InvalidArgument
from mcp_agentbus.ids import (
    AGENT_RE,
    CURSOR_RE,
    EVENT_PATTERN_RE,
    IDEMPOTENCY_KEY_RE,
    MAX_EVENT_SCAN_BYTES,
    MAX_JSON_BYTES,
    MAX_REPLY_BYTES,
    REPLY_ROOM,
    TOPIC_RE,
    encode_json,
)
from mcp_agentbus.redis.replies import PUBLISH_EVENT, READ_EVENTS
from mcp_agentbus.redis.store import Store, require

# Written only by the bus itself.
BUS_TOPICS = ("task.", "workflow.", "lock.", "agent.", "message.", "state.")
MAX_LIMIT = 500
SCAN_FACTOR = 10  # entries scanned per requested event when filtering by topic, so a read stays bounded
# An entry of the log is at most its data (MAX_JSON_BYTES) plus id, topic, agent and field names; the
# bus's own events are far smaller. Scans size their batches by it so they never read past their budget.
MAX_ENTRY_BYTES = MAX_JSON_BYTES + 1_024
MAX_ID_PART = 2**64 - 1  # each part of a stream id is an unsigned 64-bit integer
LAST_ID = f"{MAX_ID_PART}-{MAX_ID_PART}"


class Events:
    """The namespace's event log (a capped Redis Stream): agents publish their own topics, the bus writes
    its own (``task.*``, ``agent.*``…) in the scripts that change state, and anyone reads after a cursor."""

    def __init__(self, store: Store, wakeups: Wakeups) -> None:
        self._store = store
        self._wakeups = wakeups

    async def publish(
        self, agent: str, topic: str, data: Any = None, *, idempotency_key: str | None = None
    ) -> PublishResult:
        """Append an event on `topic` (not one of the bus's own); a repeated `idempotency_key` returns the
        first event's id."""
        require(agent, AGENT_RE, "agent id")
        require(topic, TOPIC_RE, "topic")
        if topic.startswith(BUS_TOPICS):
            raise InvalidArgument(
                f"topic {topic!r} is reserved: the bus itself writes {'*, '.join(BUS_TOPICS)}*",
                hint="Use a topic of your own, such as 'build.failed' or 'review.requested'.",
            )
        if idempotency_key is not None:
            require(idempotency_key, IDEMPOTENCY_KEY_RE, "idempotency_key")
        scope = idempotency_scope("publish_event", agent, idempotency_key)
        published = await self._store.run(PUBLISH_EVENT, agent, scope, topic, encode_json(data, "data"))
        return PublishResult(event_id=published.event_id, duplicate=published.duplicate)

    async def read(
        self,
        *,
        topics: Sequence[str] | None = None,
        after: str | None = None,
        limit: int = 50,
        wait_seconds: float = 0,
        on_progress: ProgressCallback | None = None,
        agent: str | None = None,
    ) -> ReadEventsResult:
        """Events after the cursor `after` ("0" = the beginning, None = from now) whose topic matches
        one of `topics` (shell-style patterns like ``task.*``), oldest first. A read stops before its
        reply would pass MAX_REPLY_BYTES, or once it has read MAX_EVENT_SCAN_BYTES of the log, and then
        returns at once (without waiting) with the cursor to go on from. A wait for `agent` also ends
        when news for it comes (a message, or something it held taken back)."""
        patterns = list(topics or ())
        for pattern in patterns:
            require(pattern, EVENT_PATTERN_RE, "topic pattern")
        if after is not None:
            _check_cursor(after)
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidArgument(f"limit must be between 1 and {MAX_LIMIT}")
        wait = Wait(self._store, wait_seconds, "events", on_progress)
        notices = wait.notices
        cursor = after if after is not None else await self._newest()
        check_trimmed = after is not None and after != "0"
        stopped: str | None = None  # why the wait ended early, once it has
        while True:
            async with self._wakeups.expect(
                (*event_topics(patterns), *news_for(agent)), waiting=wait.remaining() > 0 and stopped is None
            ) as waiter:
                scan = await self._scan(patterns, cursor, limit, check_trimmed=check_trimmed)
                cursor, check_trimmed = scan.cursor, False
                if scan.trimmed_to is not None:
                    notices.append(
                        f"Events before {scan.trimmed_to} were trimmed by the retention; reading from the "
                        "oldest kept."
                    )
                if scan.stopped or scan.events or wait.remaining() <= 0 or stopped is not None:
                    told = [stopped] if stopped is not None and not scan.events else []
                    return ReadEventsResult(
                        events=scan.events, cursor=cursor, notices=notices + told + scan.notices
                    )
                await wait.sleep(waiter.event)
                stopped = waiter.stopped_by_news(agent)

    async def recent(self, pattern: str, limit: int = 50) -> ReadEventsResult:
        """The newest events (up to `limit`, oldest first, within MAX_REPLY_BYTES) whose topic matches
        `pattern`, looking back at most `limit * SCAN_FACTOR` entries and MAX_EVENT_SCAN_BYTES; the
        cursor continues from the newest event in the log."""
        require(pattern, EVENT_PATTERN_RE, "topic pattern")
        found: list[EventView] = []
        budget, newest, start = _Budget(limit * SCAN_FACTOR), "0", "+"
        with self._store.backend():
            while len(found) < limit and (count := budget.batch()):
                entries = cast(
                    list[tuple[str, dict[str, str]]],
                    await self._store.redis.xrevrange(self._store.keys.events, start, "-", count=count),
                )
                if newest == "0" and entries:
                    newest = entries[0][0]
                for event_id, fields in entries:
                    size = _entry_bytes(event_id, fields)
                    budget.read(size)
                    start = f"({event_id}"
                    if fnmatch.fnmatchcase(fields["topic"], pattern):
                        if not budget.fits(size, bool(found)):
                            return ReadEventsResult(events=found[::-1], cursor=newest)
                        found.append(event_view(event_id, fields))
                        if len(found) == limit:
                            break
                if len(entries) < count:
                    break
        return ReadEventsResult(events=found[::-1], cursor=newest)

    async def _scan(
        self, patterns: list[str], cursor: str, limit: int, *, check_trimmed: bool = False
    ) -> _Scan:
        """Up to `limit` matching events after `cursor`, within the reply and scan budgets; and, if
        asked (`check_trimmed`), whether the retention trimmed events after `cursor` (`trimmed_to`)."""
        scan = _Scan(cursor)
        budget = _Budget(limit * SCAN_FACTOR if patterns else limit)
        while len(scan.events) < limit:
            count = budget.batch()
            if not count:  # the last batch was full, so the log may go on past the budget
                scan.stopped = "scanned"
                scan.notices.append(
                    f"This read looked at as much of the log as one read may ({budget.looked} events, "
                    f"{budget.bytes_read:,} bytes) without reaching its end: call read_events again "
                    "with this cursor to go on."
                )
                break
            if scan.cursor == LAST_ID:  # nothing can follow it (and Redis refuses "(" before it)
                break
            # A script, not a bare XRANGE: the call's notices come in the same round trip.
            read = await self._store.run(READ_EVENTS, scan.cursor, count, "1" if check_trimmed else "0")
            scan.trimmed_to, check_trimmed = scan.trimmed_to or read.trimmed_to, False
            for event_id, fields in read.entries:
                size = _entry_bytes(event_id, fields)
                budget.read(size)
                if not patterns or any(fnmatch.fnmatchcase(fields["topic"], p) for p in patterns):
                    if not budget.fits(size, bool(scan.events)):
                        scan.stopped = "full"
                        scan.notices.append(
                            "More events wait after this cursor than one reply holds: "
                            "call read_events again with this cursor for them."
                        )
                        return scan
                    scan.events.append(event_view(event_id, fields))
                scan.cursor = event_id
                if len(scan.events) == limit:
                    break
            if len(read.entries) < count:
                break
        return scan

    async def _newest(self) -> str:
        with self._store.backend():
            last = await self._store.redis.xrevrange(self._store.keys.events, "+", "-", count=1)
        return cast(str, last[0][0]) if last else "0"


@dataclass
class _Scan:
    cursor: str  # the last entry looked at: the next scan starts after it
    events: list[EventView] = field(default_factory=list)
    trimmed_to: str | None = None  # the oldest event kept, when the retention trimmed events after the cursor
    stopped: str | None = None  # "full" (reply budget) or "scanned" (scan budget): more may follow now
    notices: list[str] = field(default_factory=list)


class _Budget:
    """What one read may take: `entries` entries of the log, MAX_EVENT_SCAN_BYTES of them, and events
    worth MAX_REPLY_BYTES (less room for the rest of the result) in its reply."""

    def __init__(self, entries: int) -> None:
        self.entries_left = entries
        self.looked = 0
        self.bytes_read = 0
        self.reply_bytes = REPLY_ROOM

    def batch(self) -> int:
        """How many entries the next XRANGE may ask for: never more than the bytes left allow, even if
        each is as large as an entry can be (0: stop)."""
        return min(self.entries_left, MAX_LIMIT, (MAX_EVENT_SCAN_BYTES - self.bytes_read) // MAX_ENTRY_BYTES)

    def read(self, size: int) -> None:
        """An entry of `size` bytes (`_entry_bytes`) was read from the log."""
        self.entries_left -= 1
        self.looked += 1
        self.bytes_read += size

    def fits(self, size: int, has_some: bool) -> bool:
        """Whether an event of `size` bytes still fits the reply; the first one always does (one is at
        most MAX_ENTRY_BYTES), so a reader always moves on."""
        size += 64  # field names, quotes and the `at` timestamp
        if has_some and self.reply_bytes + size > MAX_REPLY_BYTES:
            return False
        self.reply_bytes += size
        return True


def _entry_bytes(event_id: str, fields: dict[str, str]) -> int:
    """An entry's size in the log: its id, field names and values."""
    return len(event_id) + sum(len(k) + len(v.encode()) for k, v in fields.items())


def _check_cursor(after: str) -> None:
    """A cursor of the log's form whose two parts fit Redis's 64-bit stream ids."""
    require(after, CURSOR_RE, "cursor")
    if any(int(part) > MAX_ID_PART for part in after.split("-")):
        raise InvalidArgument(
            f"cursor {after!r} is past the largest event id (each part is at most {MAX_ID_PART})",
            hint="Pass the cursor a read_events result gave you, or '0' for the beginning.",
        )


def event_view(event_id: str, fields: dict[str, str]) -> EventView:
    return EventView(
        id=event_id,
        topic=fields["topic"],
        agent=fields.get("agent") or None,
        data=json.loads(fields.get("data") or "null"),
        at=iso(event_id.partition("-")[0]) or "",
    )
