"""Events: the namespace's durable log (a Redis Stream). The bus's scripts append an event for every
state change; agents publish their own topics and read the log by cursor, optionally waiting."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Sequence
from typing import Any, cast

from mcp_agentbus.errors import InvalidArgument
from mcp_agentbus.limits import CURSOR_PATTERN, EVENT_PATTERN_PATTERN, TOPIC_PATTERN, encode_json
from mcp_agentbus.models import EventView, PublishResult, ReadEventsResult, iso
from mcp_agentbus.store import Store, require
from mcp_agentbus.tasks import AGENT_RE, IDEMPOTENCY_KEY_RE, idempotency_scope
from mcp_agentbus.waiting import ProgressCallback, Wait
from mcp_agentbus.wakeups import Wakeups

TOPIC_RE = re.compile(TOPIC_PATTERN)
EVENT_PATTERN_RE = re.compile(EVENT_PATTERN_PATTERN)
CURSOR_RE = re.compile(CURSOR_PATTERN)
BUS_TOPICS = ("task.", "workflow.", "lock.", "agent.", "message.")  # written only by the bus itself
MAX_LIMIT = 500
SCAN_FACTOR = 10  # entries scanned per requested event when filtering by topic, so a read stays bounded


class Events:
    def __init__(self, store: Store, wakeups: Wakeups) -> None:
        self._store = store
        self._wakeups = wakeups

    async def publish(
        self, agent: str, topic: str, data: Any = None, *, idempotency_key: str | None = None
    ) -> PublishResult:
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
        status, event_id = await self._store.run(
            "publish_event", agent, scope, topic, encode_json(data, "data")
        )
        return PublishResult(event_id=event_id, duplicate=status == "duplicate")

    async def read(
        self,
        *,
        topics: Sequence[str] | None = None,
        after: str | None = None,
        limit: int = 50,
        wait_seconds: float = 0,
        on_progress: ProgressCallback | None = None,
    ) -> ReadEventsResult:
        """Events after the cursor `after` ("0" = the beginning, None = from now) whose topic matches
        one of `topics` (shell-style patterns like ``task.*``), oldest first."""
        patterns = list(topics or ())
        for pattern in patterns:
            require(pattern, EVENT_PATTERN_RE, "topic pattern")
        if after is not None:
            require(after, CURSOR_RE, "cursor")
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidArgument(f"limit must be between 1 and {MAX_LIMIT}")
        wait = Wait(wait_seconds, self._store.settings.max_wait_seconds, "events", on_progress)
        notices = wait.notices
        cursor = after if after is not None else await self._newest()
        check_trimmed = after is not None and after != "0"
        while True:
            with self._wakeups.expect() as woken:
                events, cursor, oldest = await self._scan(patterns, cursor, limit, with_oldest=check_trimmed)
                if check_trimmed:
                    notices += _trimmed_notice(cast(str, after), oldest)
                    check_trimmed = False
                if events or wait.remaining() <= 0:
                    return ReadEventsResult(events=events, cursor=cursor, notices=notices)
                await wait.sleep(woken)

    async def recent(self, pattern: str, limit: int = 50) -> ReadEventsResult:
        """The newest events (up to `limit`, oldest first) whose topic matches `pattern`; the cursor
        continues from the newest event in the log."""
        require(pattern, EVENT_PATTERN_RE, "topic pattern")
        budget, found = limit * SCAN_FACTOR, []
        with self._store.backend():
            entries = cast(
                list[tuple[str, dict[str, str]]],
                await self._store.redis.xrevrange(self._store.keys.events, "+", "-", count=budget),
            )
        for event_id, fields in entries:
            if fnmatch.fnmatchcase(fields["topic"], pattern):
                found.append(event_view(event_id, fields))
                if len(found) == limit:
                    break
        cursor = entries[0][0] if entries else "0"
        return ReadEventsResult(events=found[::-1], cursor=cursor)

    async def _scan(
        self, patterns: list[str], cursor: str, limit: int, *, with_oldest: bool = False
    ) -> tuple[list[EventView], str, str | None]:
        """Up to `limit` matching events after `cursor`, scanning a bounded number of entries; and, if
        asked, the oldest event id kept, read in the same round trip as the first batch."""
        found: list[EventView] = []
        oldest: str | None = None
        budget = limit * SCAN_FACTOR if patterns else limit
        key = self._store.keys.events
        with self._store.backend():
            while len(found) < limit and budget > 0:
                batch = min(budget, MAX_LIMIT)
                start = "-" if cursor == "0" else f"({cursor}"
                if with_oldest:
                    async with self._store.redis.pipeline(transaction=False) as pipe:
                        pipe.xrange(key, "-", "+", count=1)
                        pipe.xrange(key, start, "+", count=batch)
                        first, entries = await pipe.execute()
                    oldest, with_oldest = (first[0][0] if first else None), False
                else:
                    entries = await self._store.redis.xrange(key, start, "+", count=batch)
                for event_id, fields in cast(list[tuple[str, dict[str, str]]], entries):
                    cursor = event_id
                    if not patterns or any(fnmatch.fnmatchcase(fields["topic"], p) for p in patterns):
                        found.append(event_view(event_id, fields))
                        if len(found) == limit:
                            break
                budget -= len(entries)
                if len(entries) < batch:
                    break
        return found, cursor, oldest

    async def _newest(self) -> str:
        with self._store.backend():
            last = await self._store.redis.xrevrange(self._store.keys.events, "+", "-", count=1)
        return cast(str, last[0][0]) if last else "0"


def _trimmed_notice(after: str, oldest: str | None) -> list[str]:
    if oldest is not None and _id_key(oldest) > _id_key(after):
        return [f"Events before {oldest} were trimmed by the retention; reading from the oldest kept."]
    return []


def _id_key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def event_view(event_id: str, fields: dict[str, str]) -> EventView:
    return EventView(
        id=event_id,
        topic=fields["topic"],
        agent=fields.get("agent") or None,
        data=json.loads(fields.get("data") or "null"),
        at=iso(event_id.partition("-")[0]) or "",
    )
