"""A POST's JSON-RPC message, read ahead of the SDK's request handler and looked at once.

Two layers stand between the SDK's body limit (which has read the body whole by then and hands it on
in one message) and its request handler, and both answer by what a POST carries: a tool call that
cannot wait is answered with one JSON body (`json_answers.py`), one that may wait is cancelled if its
client hangs up (`hang_ups.py`). The first of them to ask reads the body and classifies it (`posted`);
the other finds that in the request's scope. The SDK is given the body again, as it came.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mcp_types import RequestId
from starlette.types import Message, Receive, Scope

PEEK_BYTES = 65_536  # a larger body is not looked at (a heartbeat's is about 200 bytes)
_SCOPE_KEY = "agentbus.posted"


@dataclass(frozen=True)
class Posted:
    """What a POST carries, as far as answering it goes."""

    waiting: RequestId | None = None  # the id of a tool call that may wait (a positive wait_seconds)
    cannot_wait: bool = False  # a tool call that returns without waiting, so sends nothing before it


OTHER = Posted()  # anything else: another method, a notification, a batch, a body not looked at


def classify(body: bytes) -> Posted:
    """What `body` carries. A wait is read as the tool reads it (pydantic takes "5" as 5); one the tool
    refuses (null, "soon", true) is neither, so its refusal goes the configured way."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return OTHER  # the SDK answers the parse error, as it would have
    if not isinstance(message, dict) or message.get("method") != "tools/call" or "id" not in message:
        return OTHER
    params = message.get("params")
    arguments = params.get("arguments") if isinstance(params, dict) else None
    if not isinstance(arguments, dict):
        return Posted(cannot_wait=True)  # no arguments (the defaults never wait), or refused at once
    wait = asked_wait(arguments)
    if wait is None:
        return OTHER
    if wait == 0:
        return Posted(cannot_wait=True)
    request_id = message["id"]
    if wait > 0 and isinstance(request_id, str | int) and not isinstance(request_id, bool):
        return Posted(waiting=request_id)
    return OTHER


def asked_wait(arguments: dict[str, Any]) -> float | None:
    """The `wait_seconds` a tool call's `arguments` ask for (0 by default), read as the tool reads it
    (pydantic takes "5" as 5); None for one the tool refuses (null, "soon", true)."""
    wait = arguments.get("wait_seconds", 0)
    if isinstance(wait, str):
        try:
            return float(wait)
        except ValueError:
            return None
    return None if isinstance(wait, bool) or not isinstance(wait, int | float) else wait


async def posted(scope: Scope, receive: Receive) -> tuple[Posted, Receive, Receive]:
    """What the POST of `scope` carries; the `receive` to serve it with (its body first: given again by
    the layer that read it); and the server's own `receive`, past the body (what it gives next is the
    hang-up, or the end of the answer)."""
    known: tuple[Posted, Receive] | None = scope.get(_SCOPE_KEY)
    if known is not None:  # a layer in front read the body, and gives it again through `receive`
        return known[0], receive, known[1]
    first = await receive()
    whole = first["type"] == "http.request" and not first.get("more_body", False)
    body = first.get("body", b"")
    found = classify(body) if whole and len(body) <= PEEK_BYTES else OTHER
    scope[_SCOPE_KEY] = (found, receive)
    pending = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return found, replay, receive
