"""A message on stdin the server cannot read, answered for its request's id where one can be found.

The SDK's stdio transport passes a line its parser refuses (not JSON, nested past about 200 levels, a
lone surrogate escape, JSON that is no JSON-RPC message) to its server as an exception, which the server
only logs at DEBUG: the client would wait for an answer until its timeout. A line too long to read at
all is skipped by ``stdio.py`` before any parser. Either way, the request's id is looked for, and the
request is answered with a JSON-RPC error; nothing of it is run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from typing import Any

import anyio
from mcp.shared.message import SessionMessage
from mcp_types import ErrorData, JSONRPCError
from pydantic import ValidationError

logger = logging.getLogger(__name__)

# A line too long to parse is answered only when it is a request whose id stands at the top level of
# its first or last 1 KiB: first after `{` (and "jsonrpc"), as the Python SDK writes it, or last before
# `}`, as the TypeScript SDK does. Anything else (a nested "id", a response) is not guessed at.
EDGE_BYTES = 1_024
_ID_VALUE = rb'(-?(?:0|[1-9][0-9]{0,17})|"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]){1,200}")'
_ID_FIRST = re.compile(rb'\A\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*' + _ID_VALUE + rb"\s*[,}]")
_ID_LAST = re.compile(rb',\s*"id"\s*:\s*' + _ID_VALUE + rb"\s*\}\s*\Z")


class Answering:
    """The SDK's read stream, less the lines its parser refused (passed on as exceptions): a request
    among them is answered here with a parse error (-32700) or, for JSON that is no JSON-RPC message,
    an invalid request (-32600). Anything else is logged."""

    def __init__(self, stream: Any, write: Any) -> None:
        self._stream = stream
        self._write = write

    @property
    def last_context(self) -> Any:  # the SDK reads the sender's context off its stream (duck-typed)
        return getattr(self._stream, "last_context", None)

    async def receive(self) -> Any:
        while isinstance(item := await self._stream.receive(), Exception):
            await self._answer(item)
        return item

    def __aiter__(self) -> Answering:
        return self

    async def __anext__(self) -> Any:
        while isinstance(item := await self._stream.__anext__(), Exception):
            await self._answer(item)
        return item

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self) -> Answering:
        await self._stream.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        result: bool | None = await self._stream.__aexit__(*exc_info)
        return result

    async def _answer(self, refused: Exception) -> None:
        errors = refused.errors() if isinstance(refused, ValidationError) else []
        first: dict[str, Any] = dict(errors[0]) if errors else {}
        seen, why = first.get("input"), str(first.get("msg", refused))
        # JSON that is no message: some error of the union's members holds the whole of it
        request = next(
            (e["input"] for e in errors if isinstance(e["input"], dict) and "method" in e["input"]), {}
        )
        found: int | str | None = None
        if first.get("type") == "json_invalid" and isinstance(seen, str):
            raw = seen.encode("utf-8", errors="replace")
            found, code, what = request_id(raw[:EDGE_BYTES], raw[-EDGE_BYTES:]), -32700, "not JSON"
        elif is_id(request.get("id")):
            found, code, what = request["id"], -32600, "no JSON-RPC 2.0 request"
        if found is None:
            logger.warning("skipped a message on stdin that could not be read, with no request id: %s", why)
            return
        logger.warning("answered request %r on stdin, which could not be read: %s", found, why)
        message = (
            f"This message is {what} this server can read ({why}); nothing was done. Send one JSON-RPC 2.0 "
            "message per line: UTF-8 JSON of valid Unicode, nested at most about 200 levels."
        )
        error = JSONRPCError(jsonrpc="2.0", id=found, error=ErrorData(code=code, message=message))
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):  # the server is done
            await self._write.send(SessionMessage(error))


def is_id(value: object) -> bool:
    """Whether `value` is a JSON-RPC request id (a string or an integer; JSON's true is no id)."""
    return isinstance(value, int | str) and not isinstance(value, bool)


def request_id(head: bytes, tail: bytes) -> int | str | None:
    """The id of the request a line starting with `head` and ending with `tail` is, if it is one."""
    if b'"method"' not in head:  # every request names its method before its params
        return None
    found = _ID_FIRST.match(head) or _ID_LAST.search(tail)
    if found is None:
        return None
    try:
        value = json.loads(found.group(1))
    except ValueError:
        return None
    return value if is_id(value) else None
