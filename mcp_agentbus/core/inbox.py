"""Inboxes: durable, ordered messages per agent (Redis Streams), read once, with server-side waits.

A message to ``role:<capability>`` or ``*`` is copied into the inbox of every live agent it reaches
at send time, so each recipient reads it once, at its own pace, whichever server process it uses.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple, cast

from mcp_agentbus.core.models import MessageView, ReadInboxResult, SendResult, iso
from mcp_agentbus.core.tasks import idempotency_scope
from mcp_agentbus.core.waiting import ProgressCallback, Wait
from mcp_agentbus.core.wakeups import Wakeups, news_for
from mcp_agentbus.errors import InvalidArgument, PayloadTooLarge
from mcp_agentbus.ids import (
    AGENT_RE,
    IDEMPOTENCY_KEY_RE,
    MAX_BODY,
    MAX_FANOUT_RECIPIENTS,
    MAX_REPLY_BYTES,
    MAX_SUBJECT,
    MESSAGE_ID_RE,
    RECIPIENT_RE,
    REPLY_ROOM,
    THREAD_ID_RE,
    encode_json,
)
from mcp_agentbus.redis.replies import READ_INBOX, SEND_MESSAGE, UNREAD_MESSAGES, InboxEntry, InboxRead
from mcp_agentbus.redis.store import Store, require

MAX_READ = 100


class Kept(NamedTuple):
    """A message an inbox keeps, and whether its agent has read it yet."""

    message: MessageView
    unread: bool


class Inbox:
    """Send to an agent, a role or everyone; read once, oldest first, with a server-side wait."""

    def __init__(self, store: Store, wakeups: Wakeups) -> None:
        self._store = store
        self._wakeups = wakeups

    async def send(
        self,
        agent: str,
        to: str,
        body: str,
        *,
        subject: str = "",
        thread_id: str | None = None,
        reply_to: str | None = None,
        data: Any = None,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Send to an agent id, ``role:<capability>`` (live agents with it) or ``*`` (all live agents)."""
        require(agent, AGENT_RE, "agent id")
        require(to, RECIPIENT_RE, "recipient (to)")
        if thread_id is not None:
            require(thread_id, THREAD_ID_RE, "thread_id")
        if reply_to is not None:
            require(reply_to, MESSAGE_ID_RE, "reply_to")
        if idempotency_key is not None:
            require(idempotency_key, IDEMPOTENCY_KEY_RE, "idempotency_key")
        if not body.strip():
            raise InvalidArgument(
                "body is empty (or only whitespace)", hint="Say something: body is the message text."
            )
        if len(body) > MAX_BODY:
            raise PayloadTooLarge(f"body is {len(body):,} characters; the limit is {MAX_BODY:,}")
        if len(subject) > MAX_SUBJECT:
            raise InvalidArgument(f"subject is {len(subject):,} characters; the limit is {MAX_SUBJECT}")
        sent = await self._store.run(
            SEND_MESSAGE,
            agent,
            idempotency_scope("send_message", agent, idempotency_key),
            to,
            subject,
            body,
            encode_json(data, "data"),
            thread_id or "",
            reply_to or "",
            self._store.settings.inbox_max,
            MAX_FANOUT_RECIPIENTS,
        )
        full, absent = list(sent.result["full"] or ()), list(sent.result["absent"] or ())
        notices = [f"{name} is not alive on the bus now; the message waits in its inbox." for name in absent]
        if full:
            notices.append(
                f"Not delivered to {', '.join(full)}: their inboxes hold "
                f"{self._store.settings.inbox_max} unread messages."
            )
        return SendResult(
            message_id=sent.result["id"],
            thread_id=sent.result["thread"],
            recipients=sent.result["recipients"],
            undelivered=full,
            duplicate=sent.duplicate,
            notices=notices,
        )

    async def read(
        self,
        agent: str,
        *,
        limit: int = 20,
        peek: bool = False,
        thread_id: str | None = None,
        wait_seconds: float = 0,
        on_progress: ProgressCallback | None = None,
    ) -> ReadInboxResult:
        """Unread messages, oldest first, marked read unless `peek`. With `wait_seconds`, wait on the
        server for one to arrive when there is none."""
        require(agent, AGENT_RE, "agent id")
        if thread_id is not None:
            require(thread_id, THREAD_ID_RE, "thread_id")
        if not 1 <= limit <= MAX_READ:
            raise InvalidArgument(f"limit must be between 1 and {MAX_READ} (got {limit})")
        wait = Wait(self._store, wait_seconds, "a message", on_progress)
        awaited = (f"inbox:{agent}", f"message:{agent}")
        stopped: str | None = None  # why the wait ended early (a loss), once it has
        while True:
            async with self._wakeups.expect(
                (*awaited, *news_for(agent)), waiting=wait.remaining() > 0 and stopped is None
            ) as waiter:
                read = await self._read_once(agent, limit, peek, thread_id or "")
                if read.entries or wait.remaining() <= 0 or stopped is not None:
                    fit = _fit_notice(len(read.entries), read.unread_remaining, peek) if read.full else []
                    told = [stopped] if stopped is not None and not read.entries else []
                    return ReadInboxResult(
                        messages=[_message(m) for m in read.entries],
                        unread_remaining=read.unread_remaining,
                        notices=wait.notices + told + fit,
                    )
                await wait.sleep(waiter.event)
                stopped = waiter.stopped_by_news(agent, awaited=awaited)

    async def recent(self, agent: str, limit: int = MAX_READ) -> list[Kept]:
        """The newest `limit` messages the agent's inbox keeps, read and unread, newest first, for a
        person's look (the dashboard): nothing is marked read and no presence renewed. (`read` with
        `peek` shows only the unread ones, oldest first.)"""
        require(agent, AGENT_RE, "agent id")
        if not 1 <= limit <= MAX_READ:
            raise InvalidArgument(f"limit must be between 1 and {MAX_READ} (got {limit})")
        keys, redis = self._store.keys, self._store.redis
        with self._store.backend():
            entries = cast(
                list[tuple[str, dict[str, str]]],
                await redis.xrevrange(keys.inbox(agent), "+", "-", count=limit),
            )
            unread = await redis.zmscore(keys.unread(agent), [e for e, _ in entries]) if entries else []
        return [
            Kept(_message(_entry(entry_id, fields)), score is not None)
            for (entry_id, fields), score in zip(entries, unread, strict=True)
        ]

    async def _read_once(self, agent: str, limit: int, peek: bool, thread_id: str) -> InboxRead:
        """One read that is never half-done: the messages it marked read for a caller that is cancelled
        meanwhile (a client that disconnected or timed out) are marked unread again. It takes only what
        fits in one reply (the script stops there and marks read only those)."""

        async def mark_unread(read: InboxRead) -> None:
            if read.entries and not peek:
                restore = [
                    part for m in read.entries for part in (m.entry_id, m.message_id.removeprefix("m-"))
                ]
                await self._store.run(UNREAD_MESSAGES, agent, *restore)

        return await self._store.run_or_undo(
            READ_INBOX,
            agent,
            limit,
            "1" if peek else "0",
            thread_id,
            MAX_REPLY_BYTES - REPLY_ROOM,
            undo=mark_unread,
        )


def _fit_notice(returned: int, remaining: int, peek: bool) -> list[str]:
    if peek:
        return [f"Only the oldest {returned} unread message(s) fit in one reply; read them to see the rest."]
    return [f"{remaining} more unread message(s) did not fit in this reply: call read_inbox again for them."]


def _entry(entry_id: str, f: dict[str, str]) -> InboxEntry:
    """A message as the inbox stream stores it (send_message.lua)."""
    fields = (f["id"], f["from"], f["to"], f["subject"], f["body"], f["data"], f["thread"], f["reply_to"])
    return InboxEntry(entry_id, *fields)


def _message(entry: InboxEntry) -> MessageView:
    return MessageView(
        id=entry.message_id,
        sender=entry.sender,
        to=entry.to,
        subject=entry.subject,
        body=entry.body,
        data=json.loads(entry.data),
        thread_id=entry.thread_id,
        reply_to=entry.reply_to or None,
        sent_at=iso(entry.entry_id.partition("-")[0]) or "",
    )
