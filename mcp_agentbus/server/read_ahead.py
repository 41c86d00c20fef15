"""A request's body, read ahead by an ASGI layer in front of the SDK's request handler and replayed to it.

The layers behind the SDK's body limit (`json_answers.JsonAnswers`, `hang_ups.HangUps`) look at a POST's
JSON-RPC message before the SDK does: the limit has read the body whole by then and hands it on in one
message.
"""

from __future__ import annotations

from starlette.types import Message, Receive


async def read_ahead(receive: Receive) -> tuple[bytes | None, Receive]:
    """The body, if it came whole in the first message (else None), and a `receive` that gives that
    message again, then what the server gives."""
    first = await receive()
    whole = first["type"] == "http.request" and not first.get("more_body", False)
    pending = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return (first.get("body", b"") if whole else None), replay
