"""Shared state (a blackboard): small JSON values under path-like keys, shared by every agent of the
namespace, versioned for compare-and-set, optionally expiring.

Every change is one run of ``lua/set_state.lua`` (which also writes ``state.set`` / ``state.deleted``
and the ``state:<key>`` wake-up hint); a key is read with the Redis clock in one script
(``lua/read_state.lua``), a listing by plain reads against it, so an expired key is never shown even
before a write clears it. A key's version only grows: its deletion (or expiry) is a
version too, kept as a tombstone that the key continues from.
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple, cast

from pydantic import BaseModel, Field

from mcp_agentbus.core.locks import canonical
from mcp_agentbus.core.models import Result, iso
from mcp_agentbus.core.tasks import idempotency_scope
from mcp_agentbus.core.waiting import ProgressCallback, Wait
from mcp_agentbus.core.wakeups import Wakeups, news_for
from mcp_agentbus.errors import InvalidArgument
from mcp_agentbus.ids import (
    AGENT_RE,
    IDEMPOTENCY_KEY_RE,
    MAX_REPLY_BYTES,
    REPLY_ROOM,
    RESOURCE_RE,
    encode_json,
    seconds,
)
from mcp_agentbus.redis.replies import READ_STATE, SET_STATE, StateWritten
from mcp_agentbus.redis.store import Store, require

MAX_LIMIT = 200  # keys one get_state lists at most
LOOK_FACTOR = 4  # index entries one listing looks at per key asked for (expired ones are skipped)
CHUNK = 25  # records read per round trip while listing: at 64 KiB each, a chunk stays under 2 MiB
_FIELDS = ("value", "version", "by", "at", "expires")

_FULL = "More keys follow than one reply holds: call get_state again with this cursor."
_SKIPPED = "This read skipped many expired keys before filling limit: call again with this cursor."


class StateEntry(BaseModel):
    key: str
    value: Any = None
    version: int = Field(description="Grows with every change of this key; pass it as if_version.")
    updated_by: str
    updated_at: str | None = None
    expires_at: str | None = Field(None, description="When the key goes unless it is set again (UTC).")


class SetStateResult(Result):
    written: bool = Field(description="False when if_version did not match, or a deleted key was not set.")
    key: str
    version: int | None = Field(None, description="The key's version after the call (a deletion is one).")
    value: Any = Field(None, description="The key's value after the call.")
    expires_at: str | None = None
    current_version: int | None = Field(
        None, description="When if_version did not match: the key's version (0: not set)."
    )
    current_value: Any = Field(None, description="When if_version did not match: the key's value.")
    duplicate: bool = Field(False, description="True when an earlier call with this idempotency_key made it.")


class GetStateResult(Result):
    entries: list[StateEntry] = Field(description="Sorted by key.")
    cursor: str | None = Field(None, description="Pass it back (with prefix) for the keys after these.")


class _Read(NamedTuple):
    """One key as read now: its entry (None when not set), its version (a deleted or expired key's is
    that of its deletion, 0 if unknown) and the seconds until it expires (inf: never)."""

    entry: StateEntry | None
    version: int
    expires_in: float


class State:
    def __init__(self, store: Store, wakeups: Wakeups) -> None:
        self._store = store
        self._wakeups = wakeups

    async def set(
        self,
        agent: str,
        key: str,
        *,
        value: Any = None,
        increment: float | None = None,
        delete: bool = False,
        if_version: int | None = None,
        ttl_seconds: float | None = None,
        idempotency_key: str | None = None,
    ) -> SetStateResult:
        """Exactly one of: `value` (any JSON but null), `increment` (added to the number the key holds,
        missing = 0) or `delete`. With `if_version`, only when the key is at that version (0: not set);
        otherwise `written` is False and the result carries the key's version and value."""
        require(agent, AGENT_RE, "agent id")
        key = canonical(key, "key")
        ops = (("value", value is not None), ("increment", increment is not None), ("delete", delete))
        given = [name for name, on in ops if on]
        if len(given) != 1:
            got = ", ".join(given) or "none"
            raise InvalidArgument(
                f"set_state takes exactly one of value, increment or delete (got {got})",
                hint="Pass value (any JSON but null) to write, increment to add a number, or delete: true.",
            )
        if if_version is not None and if_version < 0:
            raise InvalidArgument(f"if_version must be 0 or more (got {if_version})")
        if ttl_seconds is not None:
            seconds(ttl_seconds, "ttl_seconds")
            if delete:
                raise InvalidArgument(
                    "ttl_seconds sets how long a written key lives; a delete takes none",
                    hint="Drop ttl_seconds to delete now, or write the key with value and ttl_seconds.",
                )
        if idempotency_key is not None:
            require(idempotency_key, IDEMPOTENCY_KEY_RE, "idempotency_key")
        if value is not None:
            op, operand = "value", encode_json(value, "value", self._store.settings.state_value_max_bytes)
        elif increment is not None:
            op, operand = "increment", _number(increment)
        else:
            op, operand = "delete", ""
        ttl_ms = "" if ttl_seconds is None else math.ceil(ttl_seconds * 1000)
        scope = idempotency_scope("set_state", agent, idempotency_key)
        r = await self._set(agent, scope, key, op, operand, "" if if_version is None else if_version, ttl_ms)
        after = json.loads(r.value) if r.value else None
        notices = []
        if r.key != key:  # a repeated idempotency_key: its first call's result, naming that call's key
            notices.append(
                f"idempotency_key {idempotency_key} was first used for {r.key}: this is that call's result, "
                f"and {key} was not written. Use a new idempotency_key for a new write."
            )
        if r.outcome == "conflict":
            return SetStateResult(
                written=False,
                key=r.key,
                current_version=r.version,
                current_value=after,
                duplicate=r.duplicate,
                notices=notices,
            )
        if r.outcome == "absent":
            notices.append(f"{r.key} is not set: nothing was deleted.")
        return SetStateResult(
            written=r.outcome != "absent",
            key=r.key,
            version=r.version if r.outcome != "absent" else None,
            value=after,
            expires_at=iso(r.expires_ms),
            duplicate=r.duplicate,
            notices=notices,
        )

    async def _set(
        self, agent: str, scope: str, key: str, op: str, operand: str, if_version: int | str, ttl: int | str
    ) -> StateWritten:
        bounds = (self._store.settings.state_keys_max, self._store.settings.state_keys_max_per_owner)
        return await self._store.run(SET_STATE, agent, scope, key, op, operand, if_version, ttl, *bounds)

    async def get(
        self,
        key: str | None = None,
        *,
        prefix: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
        after_version: int | None = None,
        wait_seconds: float = 0,
        on_progress: ProgressCallback | None = None,
        agent: str | None = None,
    ) -> GetStateResult:
        """One key, or (`prefix`) every key that starts with it, sorted, `limit` at a time with a `cursor`
        to go on. With `after_version`, waits up to `wait_seconds` until `key`'s version is above it
        (a deletion or expiry counts: the key then comes back absent); a wait for `agent` also ends
        when news for it comes (a message, or something it held taken back)."""
        if (key is None) == (prefix is None):
            raise InvalidArgument(
                "get_state takes exactly one of key or prefix",
                hint="Pass key for one key, or prefix (e.g. 'results/', or '' for all) to list keys.",
            )
        if prefix is not None:
            if after_version is not None or wait_seconds:
                raise InvalidArgument(
                    "after_version and wait_seconds wait for one key: pass key, not prefix",
                    hint="Wait on the one key that changes (a counter or a status key), then list.",
                )
            return await self._list(_prefix(prefix), cursor, limit)
        key = canonical(cast(str, key), "key")
        if cursor is not None:
            raise InvalidArgument("cursor goes with prefix, not key", hint="Drop cursor to read one key.")
        if wait_seconds and after_version is None:
            raise InvalidArgument(
                "wait_seconds needs after_version: the version you last saw (0 if none)",
                hint="Pass after_version too; the call returns once the key's version is above it.",
            )
        if after_version is not None and after_version < 0:
            raise InvalidArgument(f"after_version must be 0 or more (got {after_version})")
        wait = Wait(self._store, wait_seconds, key, on_progress)
        stopped: str | None = None  # why the wait ended early, once it has
        while True:
            async with self._wakeups.expect(
                (f"state:{key}", *news_for(agent)), waiting=wait.remaining() > 0 and stopped is None
            ) as waiter:
                read = await self._read(key)
                changed = after_version is None or read.version > after_version
                if changed or wait.remaining() <= 0 or stopped is not None:
                    entries = [] if read.entry is None else [read.entry]
                    told = [stopped] if stopped is not None and not changed else []
                    return GetStateResult(entries=entries, notices=wait.notices + told)
                await wait.sleep(waiter.event, at_most=read.expires_in)  # an expiry changes the key too
                stopped = waiter.stopped_by_news(agent)

    async def _read(self, key: str) -> _Read:
        read = await self._store.run(READ_STATE, key)
        now, fields = read.now_ms, read.fields
        entry = _entry(key, fields, now)
        if entry is not None:
            expires = int(fields[4] or 0)
            return _Read(entry, entry.version, (expires - now) / 1000 if expires else math.inf)
        version = int(fields[1]) + 1 if fields[1] is not None else read.tombstone
        return _Read(None, version, math.inf)

    async def _list(self, prefix: str, cursor: str | None, limit: int) -> GetStateResult:
        """Keys from `cursor` (exclusive) that start with `prefix`: up to `limit`, within one reply."""
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidArgument(f"limit must be between 1 and {MAX_LIMIT} (got {limit})")
        if cursor is not None and not (RESOURCE_RE.fullmatch(cursor) and cursor.startswith(prefix)):
            raise InvalidArgument(
                f"cursor {cursor!r} is not a key under prefix {prefix!r}",
                hint="Pass the cursor the last get_state with this prefix returned, or none to start.",
            )
        keys, redis = self._store.keys, self._store.redis
        now = await self._store.now_ms()
        low = f"({cursor}" if cursor is not None else f"[{prefix}"
        high = b"[" + prefix.encode() + b"\xff"  # no UTF-8 text has the byte 0xff: past every key under it
        entries: list[StateEntry] = []
        room, looked, last = MAX_REPLY_BYTES - REPLY_ROOM, 0, cursor
        with self._store.backend():
            while True:
                count = min(CHUNK, limit * LOOK_FACTOR - looked)
                names = cast(list[str], await redis.zrangebylex(keys.state_keys, low, high, 0, count))
                async with redis.pipeline(transaction=False) as pipe:
                    for name in names:
                        pipe.hmget(keys.state(name), *_FIELDS)
                    records = await pipe.execute()
                for name, fields in zip(names, records, strict=True):
                    entry = _entry(name, fields, now)
                    if entry is not None:
                        room -= len(entry.model_dump_json().encode()) + 1
                        if room < 0 and entries:
                            return GetStateResult(entries=entries, cursor=last, notices=[_FULL])
                        entries.append(entry)
                    looked += 1
                    last, low = name, f"({name}"
                    if len(entries) == limit or looked == limit * LOOK_FACTOR:
                        more = await redis.zrangebylex(keys.state_keys, low, high, 0, 1)
                        skipped = [_SKIPPED] if more and len(entries) < limit else []
                        return GetStateResult(entries=entries, cursor=last if more else None, notices=skipped)
                if len(names) < count:
                    return GetStateResult(entries=entries)


def _entry(key: str, fields: list[str | None], now_ms: int) -> StateEntry | None:
    """The entry of a record (HMGET of _FIELDS), or None when it is not set or has expired."""
    value, version, by, at, expires = fields
    if version is None or value is None or (expires not in (None, "0") and int(expires) <= now_ms):
        return None
    return StateEntry(
        key=key,
        value=json.loads(value),
        version=int(version),
        updated_by=by or "",
        updated_at=iso(at),
        expires_at=iso(expires),
    )


def _prefix(prefix: str) -> str:
    """A listing's prefix: '' (every key) or a key's beginning, canonical like a key (keeping a
    trailing '/', so 'results/' lists results/a but not results-old)."""
    return "" if prefix == "" else canonical(prefix, "prefix")


def _number(increment: float) -> str:
    """An increment as the script reads it: integers exactly, other numbers in full precision."""
    if not math.isfinite(increment):
        raise InvalidArgument(f"increment must be a finite number (got {increment!r})")
    if float(increment).is_integer() and abs(increment) < 2**53:
        return str(int(increment))
    return repr(float(increment))
