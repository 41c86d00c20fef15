"""What each Lua script answers, typed: the one place where a script's reply is read by position.

Every reply has one encoding: a flat array whose first item is the outcome — ``'ok'``, another word the
script's header lists (``'empty'``, ``'held'``…), or a refusal that `Store.run` raises before a reader
sees it — then that outcome's fields in the order the header gives. Within it, a map is a flat
``{name, value, …}`` array (`_pairs`), a flag is ``'1'``/``'0'`` (`_flag`), a time is milliseconds of the
Redis clock, and JSON is only ever what an agent wrote (payloads, results, data: decoded where results
are built) or the recorded first reply of an idempotent call (`Recorded`), stored and replayed as is.

Each script is a `Script`: its name, checked against the files by type (`ScriptName`), and the reader
that turns its array into the reply below. The core calls ``store.run(CLAIM_TASK, …)`` and gets a
`Claimed` or a `NothingReady`, never a list.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from mcp_agentbus.redis.scripts import Script


def _flag(value: Any) -> bool:
    return bool(value == "1")


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _ms(value: Any) -> int | None:
    """A time the script may leave out ('')."""
    return None if value in ("", None) else int(value)


class Recorded(NamedTuple):
    """The reply of an idempotent create or send: the result of its first call, and whether this call
    repeated it."""

    result: dict[str, Any]
    duplicate: bool


def _recorded(reply: list[Any]) -> Recorded:
    return Recorded(json.loads(reply[1]), reply[0] == "duplicate")


class Claimed(NamedTuple):
    task_id: str
    key: str  # '' when the task has none
    workflow_id: str  # '' outside a workflow
    title: str
    description: str
    payload: str  # JSON text
    capability: str
    priority: str
    attempt: int
    max_attempts: int
    fence: int
    lease_token: str
    expires_at_ms: int
    inputs: dict[str, str]  # dependency key → its result as JSON text


class NothingReady(NamedTuple):
    capabilities: list[str]  # what the claim looked under
    delayed: int  # tasks waiting for their delay
    next_due_ms: int | None  # when the first of them falls due
    ready_elsewhere: dict[str, int]  # other capabilities with ready tasks → how many
    now_ms: int


def _claim(reply: list[Any]) -> Claimed | NothingReady:
    if reply[0] == "empty":
        _, caps, delayed, next_due, elsewhere, now = reply
        counts = {cap: int(n) for cap, n in _pairs(elsewhere).items()}
        return NothingReady(caps, int(delayed), _ms(next_due), counts, int(now))
    _, id_, key, wf, title, desc, payload, cap, prio, attempt, max_attempts, fence, token, expires, inputs = (
        reply
    )
    return Claimed(
        id_, key, wf, title, desc, payload, cap, prio, int(attempt), int(max_attempts), int(fence), token,
        int(expires), _pairs(inputs),
    )  # fmt: skip


class Completed(NamedTuple):
    already: bool  # the same lease had completed it before: nothing changed
    unblocked: list[str]
    workflow_id: str
    progress: list[str | None]  # the workflow's PROGRESS_FIELDS, [] outside a workflow
    more: bool  # unblocking further dependents was left to the reaper


def _complete(reply: list[Any]) -> Completed:
    _, already, unblocked, wf, progress, more = reply
    return Completed(_flag(already), unblocked, wf, progress, _flag(more))


class Failed(NamedTuple):
    already: bool
    state: str  # ready | delayed | dead
    retry_at_ms: int | None
    cancelled: list[str]  # dependents cancelled because it is dead
    attempts: int
    max_attempts: int
    more: bool  # cancelling further dependents was left to the reaper


def _fail(reply: list[Any]) -> Failed:
    _, already, state, due, cancelled, attempts, max_attempts, more = reply
    return Failed(_flag(already), state, _ms(due), cancelled, int(attempts), int(max_attempts), _flag(more))


class Beat(NamedTuple):
    joined: bool  # the agent was not live before this heartbeat
    leases: dict[str, int]  # task id → new lease expiry (ms)
    live_agents: int
    capabilities: list[str]
    joined_at_ms: int
    now_ms: int
    locks: dict[str, int]  # resource → new expiry (ms)
    unread: int
    gone_at_ms: int | None  # it re-joined: when it had been reported gone
    assigned: int  # ready tasks assigned to it, waiting for its claim


class Left(NamedTuple):
    """Status 'offline': the agent left; what it still holds expires as usual."""

    leases: dict[str, int]  # task id → lease expiry (ms)
    locks: dict[str, int]  # resource → expiry (ms)
    now_ms: int
    live_agents: int
    unread: int


def _heartbeat(reply: list[Any]) -> Beat | Left:
    if reply[0] == "left":
        _, leases, locks, now, live, unread = reply
        return Left(_expiries(leases), _expiries(locks), int(now), int(live), int(unread))
    _, joined, leases, live, caps, joined_at, now, locks, unread, gone_at, assigned = reply
    return Beat(
        _flag(joined),
        _expiries(leases),
        int(live),
        [cap for cap in caps.split(",") if cap],
        int(joined_at),
        int(now),
        _expiries(locks),
        int(unread),
        _ms(gone_at),
        int(assigned),
    )


def _expiries(flat: list[Any]) -> dict[str, int]:
    return {name: int(ms) for name, ms in _pairs(flat).items()}


class Granted(NamedTuple):
    lock_token: str
    fencing_token: int
    expires_at_ms: int
    extended: bool  # the agent held it already: same tokens, later expiry


class Held(NamedTuple):
    conflicting_resource: str  # the lock in the way: this one, one above it, or one below
    holder: str
    expires_at_ms: int
    waiters: int
    now_ms: int


class Queued(NamedTuple):
    """Free, but another agent has waited for it longer."""

    first_waiter: str
    waiters: int
    now_ms: int


def _acquire(reply: list[Any]) -> Granted | Held | Queued:
    if reply[0] == "ok":
        _, token, fence, expires, extended = reply
        return Granted(token, int(fence), int(expires), _flag(extended))
    if reply[0] == "held":
        _, conflict, holder, expires, waiters, now = reply
        return Held(conflict, holder, int(expires), int(waiters), int(now))
    _, first, waiters, now = reply
    return Queued(first, int(waiters), int(now))


class LockReleased(NamedTuple):
    released: bool
    reason: str  # why nothing was released ('' when it was)


class LockRevoked(NamedTuple):
    holder: str  # whom it was taken from
    fencing_token: int  # the holder's; the next grant's is higher
    waiters: int  # agents queued for it, the first of whom takes it next


class InboxEntry(NamedTuple):
    entry_id: str  # the inbox stream's entry id; its first part is the send time (ms)
    message_id: str
    sender: str
    to: str
    subject: str
    body: str
    data: str  # JSON text
    thread_id: str
    reply_to: str  # '' when none


class InboxRead(NamedTuple):
    entries: list[InboxEntry]
    unread_remaining: int
    full: bool  # the reply budget stopped the read before its limit


def _read_inbox(reply: list[Any]) -> InboxRead:
    _, found, remaining, full = reply
    return InboxRead([InboxEntry(*entry) for entry in found], int(remaining), full == 1)


class Published(NamedTuple):
    event_id: str
    duplicate: bool


class Reaped(NamedTuple):
    reclaimed: int
    promoted: int
    gone: int
    more: bool  # a batch was full or a cascade is left: sweep again
    locks_expired: int
    cascaded: int


def _reap(reply: list[Any]) -> Reaped | None:
    if reply[0] == "busy":  # another process holds the reaper role
        return None
    _, reclaimed, promoted, gone, more, locks_expired, cascaded = reply
    return Reaped(reclaimed, promoted, gone, _flag(more), locks_expired, cascaded)


class StateWritten(NamedTuple):
    duplicate: bool  # an idempotency_key repeated: the first call's outcome
    outcome: str  # written | deleted | conflict (if_version did not match) | absent (nothing to delete)
    version: int  # after the call (conflict: the current one; 0 = not set)
    value: str  # JSON text, '' for none
    expires_ms: int  # 0 = never
    key: str  # the key it wrote (a duplicate: the one its first call named)


def _set_state(reply: list[Any]) -> StateWritten:
    return StateWritten(reply[0] == "duplicate", reply[1], int(reply[2]), reply[3], int(reply[4]), reply[5])


class StateRead(NamedTuple):
    now_ms: int
    fields: list[str | None]  # value, version, by, at, expires: None where the key has none
    tombstone: int  # the version its last deletion left (0: none)


class EventsRead(NamedTuple):
    trimmed_to: str | None  # the oldest event kept, when the retention trimmed events after the cursor
    entries: list[tuple[str, dict[str, str]]]  # each event's id and fields, oldest first


def _read_state(reply: list[Any]) -> StateRead:
    _, now, *fields, tomb = reply
    return StateRead(int(now), fields, int(tomb or 0))


ACQUIRE_LOCK = Script("acquire_lock", _acquire)
CANCEL_TASK = Script("cancel_task", _recorded)  # {cancelled, already_final, more}
CLAIM_TASK = Script("claim_task", _claim)
CLOCK = Script("clock", lambda reply: int(reply[1]))
COMPLETE_TASK = Script("complete_task", _complete)
CREATE_TASK = Script("create_task", _recorded)
CREATE_WORKFLOW = Script("create_workflow", _recorded)
FAIL_TASK = Script("fail_task", _fail)
HEARTBEAT = Script("heartbeat", _heartbeat)
LEAVE_LOCK_QUEUE = Script("leave_lock_queue", lambda reply: None)
PUBLISH_EVENT = Script("publish_event", lambda reply: Published(reply[1], reply[0] == "duplicate"))
READ_INBOX = Script("read_inbox", _read_inbox)
READ_EVENTS = Script("read_events", lambda r: EventsRead(r[1] or None, [(i, _pairs(f)) for i, f in r[2]]))
READ_STATE = Script("read_state", _read_state)
REAP = Script("reap", _reap)
RELEASE_LOCK = Script("release_lock", lambda reply: LockReleased(_flag(reply[1]), reply[2]))
RELEASE_TASK = Script("release_task", lambda reply: _flag(reply[1]))  # released: the lease was still this one
RETRY_TASK = Script("retry_task", _recorded)  # {task_id, state, restored, more}
SEND_MESSAGE = Script("send_message", _recorded)
SET_STATE = Script("set_state", _set_state)
REVOKE_LOCK = Script("revoke_lock", lambda reply: LockRevoked(reply[1], int(reply[2]), int(reply[3])))
UNREAD_MESSAGES = Script("unread_messages", lambda reply: int(reply[1]))  # how many were marked unread again
