"""Identifier formats and size bounds, checked before anything reaches a key or a script."""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any

from pydantic import StringConstraints

from mcp_agentbus.errors import InvalidArgument, PayloadTooLarge

NAMESPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
AGENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
CAPABILITY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
TASK_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
TASK_ID_PATTERN = r"^t-[0-9]{1,15}$"
WORKFLOW_ID_PATTERN = r"^wf-[0-9]{1,15}$"
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,128}$"
TOPIC_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"
EVENT_PATTERN_PATTERN = r"^[A-Za-z0-9_.:*?\[\]-]{1,100}$"  # shell-style: task.*, build.?
MESSAGE_ID_PATTERN = r"^m-[0-9]{1,15}$"
THREAD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
RECIPIENT_PATTERN = r"^(\*|role:[A-Za-z0-9][A-Za-z0-9._-]{0,63}|[A-Za-z0-9][A-Za-z0-9._-]{0,63})$"
CURSOR_PATTERN = r"^(0|[0-9]{1,20}-[0-9]{1,20})$"
RESOURCE_PATTERN = (
    r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]{1,512}$"  # any printable name; '/' makes it hierarchical
)

AgentId = Annotated[str, StringConstraints(pattern=AGENT_PATTERN)]
Capability = Annotated[str, StringConstraints(pattern=CAPABILITY_PATTERN)]
TaskKey = Annotated[str, StringConstraints(pattern=TASK_KEY_PATTERN)]
TaskId = Annotated[str, StringConstraints(pattern=TASK_ID_PATTERN)]
WorkflowId = Annotated[str, StringConstraints(pattern=WORKFLOW_ID_PATTERN)]
IdempotencyKey = Annotated[str, StringConstraints(pattern=IDEMPOTENCY_KEY_PATTERN)]
Resource = Annotated[str, StringConstraints(pattern=RESOURCE_PATTERN)]
Topic = Annotated[str, StringConstraints(pattern=TOPIC_PATTERN)]
TopicPattern = Annotated[str, StringConstraints(pattern=EVENT_PATTERN_PATTERN)]
Cursor = Annotated[str, StringConstraints(pattern=CURSOR_PATTERN)]
MessageId = Annotated[str, StringConstraints(pattern=MESSAGE_ID_PATTERN)]
ThreadId = Annotated[str, StringConstraints(pattern=THREAD_ID_PATTERN)]
Recipient = Annotated[str, StringConstraints(pattern=RECIPIENT_PATTERN)]

# The checkers the core runs before an identifier reaches a key (the same patterns as the types above).
NAMESPACE_RE = re.compile(NAMESPACE_PATTERN)
AGENT_RE = re.compile(AGENT_PATTERN)
CAPABILITY_RE = re.compile(CAPABILITY_PATTERN)
TASK_KEY_RE = re.compile(TASK_KEY_PATTERN)
TASK_ID_RE = re.compile(TASK_ID_PATTERN)
WORKFLOW_ID_RE = re.compile(WORKFLOW_ID_PATTERN)
IDEMPOTENCY_KEY_RE = re.compile(IDEMPOTENCY_KEY_PATTERN)
TOPIC_RE = re.compile(TOPIC_PATTERN)
EVENT_PATTERN_RE = re.compile(EVENT_PATTERN_PATTERN)
MESSAGE_ID_RE = re.compile(MESSAGE_ID_PATTERN)
THREAD_ID_RE = re.compile(THREAD_ID_PATTERN)
RECIPIENT_RE = re.compile(RECIPIENT_PATTERN)
CURSOR_RE = re.compile(CURSOR_PATTERN)
RESOURCE_RE = re.compile(RESOURCE_PATTERN)

MAX_TITLE = 200
MAX_DESCRIPTION = 16_384
MAX_SUMMARY = 2_000
MAX_ERROR = 8_192
MAX_NOTE = 500
MAX_STATUS = 64
MAX_SUBJECT = 200
MAX_BODY = 16_384
MAX_JSON_BYTES = 65_536  # one payload or result
MAX_WORKFLOW_JSON_BYTES = 1_048_576  # all payloads of one workflow together
# Levels of objects and arrays in one JSON value: far more than data needs, and well inside what a reply
# can carry back (pydantic's serializer stops near 255 levels, the SDK's stdio parser near 200).
MAX_JSON_DEPTH = 100
MAX_WORKFLOW_TASKS = 200
MAX_DEPENDENCIES = 50
MAX_CAPABILITIES = 20


def encode_json(value: Any, field: str, limit: int = MAX_JSON_BYTES) -> str:
    """Compact JSON text of `value`, refused past `limit` bytes, nested past `MAX_JSON_DEPTH` levels, or
    when it holds NaN or Infinity (JSON has neither: stored, they would come back as null) or a lone
    surrogate (no UTF-8 can carry it): refused here, as nothing could read it back."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise InvalidArgument(
            f"{field} contains NaN or Infinity, which JSON does not allow",
            hint=f'Send finite numbers in {field} (or a string such as "NaN"), then call again.',
        ) from exc
    try:
        size = len(text.encode())
    except UnicodeEncodeError as exc:
        raise InvalidArgument(
            f"{field} contains a lone surrogate ({text[exc.start : exc.end]!a}), which is not valid Unicode",
            hint=f"Send {field} as valid Unicode text (a surrogate pair, or the character itself).",
        ) from exc
    if size > limit:
        raise PayloadTooLarge(f"{field} is {size:,} bytes of JSON; the limit is {limit:,} bytes")
    # Brackets bound the nesting from above (those in strings count too): most values need no walk.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _nested_past(value, MAX_JSON_DEPTH):
        raise InvalidArgument(
            f"{field} is nested more than {MAX_JSON_DEPTH} levels deep",
            hint=f"Flatten {field} (or send a deep structure as one JSON string), then call again.",
        )
    return text


def _nested_past(value: Any, depth: int) -> bool:
    """Whether `value` has objects or arrays nested more than `depth` levels deep."""
    level: list[Any] = [value] if isinstance(value, dict | list) else []  # the containers at one depth
    for _ in range(depth):
        if not level:
            return False
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
    return bool(level)


def seconds(value: float, name: str, *, allow_zero: bool = False) -> float:
    """A duration from a caller: finite, and positive (or zero where `allow_zero`)."""
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "more than zero"
        raise InvalidArgument(f"{name} must be a finite number of seconds, {bound} (got {value!r})")
    return value


# What one reply may carry: the JSON of a tool's structured result, or of a resource read. A read that
# gathers items (messages, events, a workflow's results) stops adding them before this, and says what
# waits. The text content renders the same items at most once more, so a whole reply stays well under
# the 1 MiB the SDK's HTTP client accepts in one SSE event.
MAX_REPLY_BYTES = 262_144
# The bytes of the event log one read_events scan may read from Redis (topic filters skip events):
# past it the scan stops and returns a cursor to go on from.
MAX_EVENT_SCAN_BYTES = 4_194_304
REPLY_ROOM = 8_192  # of a reply, kept for what surrounds its items: counts, cursors, notices
MAX_DEPENDENTS = 1_000  # tasks that may depend on one task: bounds the work of completing or killing it
MAX_INPUTS_BYTES = 163_840  # a claim's `inputs` (its dependencies' results together): with a payload and a
# plain description a claim stays under MAX_REPLY_BYTES; a description of escaped characters (6 bytes of
# JSON each) can take it to about 330 KiB, still far inside the 1 MiB an SSE client reads in one event
MAX_HELD_TASKS = 1_000  # leases one agent may hold at once: bounds the work of its heartbeat and notices
MAX_HELD_LOCKS = 200  # locks one agent may hold at once: bounds its heartbeat's work and reply
MAX_FANOUT_RECIPIENTS = 1_000  # live agents a role: or * message may reach: bounds send_message's scan
