"""What a POST carries (`posted.py`), looked at once for both layers that answer by it: a tool call that
cannot wait (answered with one JSON body) and one that may wait (cancelled when its client hangs up)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from starlette.types import Message, Receive, Scope, Send

from mcp_agentbus.server.hang_ups import HangUps
from mcp_agentbus.server.json_answers import JsonAnswers, answered_whole
from mcp_agentbus.server.posted import OTHER, PEEK_BYTES, Posted, classify

pytestmark = pytest.mark.anyio

NO_WAIT = Posted(cannot_wait=True)


def call(arguments: Any = None, request_id: Any = 7, **extra: Any) -> bytes:
    params = {"name": "claim_task"} if arguments is None else {"name": "claim_task", "arguments": arguments}
    message = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params, **extra}
    return json.dumps(message).encode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (call({"wait_seconds": 5}), Posted(waiting=7)),
        (call({"wait_seconds": 0.5}, request_id="a"), Posted(waiting="a")),
        (call({"wait_seconds": "5"}), Posted(waiting=7)),  # pydantic reads it as 5
        (call({"wait_seconds": int("1" + "0" * 400)}), Posted(waiting=7)),
        (call({"wait_seconds": "1e999"}), Posted(waiting=7)),
        (call({"note": "x"}), NO_WAIT),  # the default wait: none
        (call(), NO_WAIT),  # no arguments: the defaults, which never wait
        (call({}), NO_WAIT),
        (call({"wait_seconds": 0}), NO_WAIT),
        (call({"wait_seconds": 0.0}), NO_WAIT),
        (call({"wait_seconds": "0"}), NO_WAIT),
        (call([1]), NO_WAIT),  # refused at once
        (b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":[]}', NO_WAIT),  # refused at once
        # refused by the tool, not at once: its refusal goes the configured way
        (call({"wait_seconds": "soon"}), OTHER),
        (call({"wait_seconds": True}), OTHER),
        (call({"wait_seconds": None}), OTHER),
        (call({"wait_seconds": -1}), OTHER),
        (
            b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":{"wait_seconds":NaN}}}',
            OTHER,
        ),
        (call({"wait_seconds": 5}, request_id=True), OTHER),  # not an id a response can carry
        (b'{"jsonrpc":"2.0","method":"tools/call","params":{"arguments":{"wait_seconds":5}}}', OTHER),
        (b'{"jsonrpc":"2.0","method":"tools/call","params":{"name":"heartbeat"}}', OTHER),  # no id
        (b'{"jsonrpc":"2.0","id":7,"method":"tools/list"}', OTHER),
        (b'{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"x"}}', OTHER),
        (b"[" + call({"wait_seconds": 5}) + b"]", OTHER),  # a batch
        (b'{"jsonrpc":"2.0","id":7', OTHER),  # cut short: the SDK's parse error
        (b"[" * 100_000, OTHER),  # too deep for the parser
        (b"\xff\xfe", OTHER),
    ],
)
def test_what_a_post_carries(body: bytes, expected: Posted) -> None:
    assert classify(body) == expected


def asgi_post(body: bytes) -> tuple[Scope, Receive, list[Message]]:
    """A POST whose body comes in one message, from a client that waits for its answer (the server's
    receive gives nothing more), and the messages `receive` gave."""
    scope: Scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": []}
    given: list[Message] = []

    async def receive() -> Message:
        if given:
            await anyio.sleep_forever()
        given.append({"type": "http.request", "body": body, "more_body": False})
        return given[-1]

    return scope, receive, given


@pytest.mark.parametrize(
    ("body", "whole"),
    [
        (call({"wait_seconds": 0}), True),
        (call({"wait_seconds": 0}) + b" " * PEEK_BYTES, False),
        (call({"wait_seconds": 5}), False),  # watched for a hang-up, past the body the SDK is given
    ],
)
async def test_both_layers_look_at_a_body_read_once_and_the_sdk_gets_it_whole(
    body: bytes, whole: bool
) -> None:
    """JSON answers in front of hang-ups, as the server stacks them: the body is read from the server
    once, classified once, and handed to the SDK's handler as it came."""
    seen: list[tuple[bool, bytes]] = []

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        await anyio.sleep(0.01)  # the SDK reads the body after work of its own, while the watch runs
        seen.append((answered_whole(), (await receive())["body"]))

    scope, receive, given = asgi_post(body)
    with anyio.fail_after(5):  # a body taken by the hang-up watch would leave the handler waiting
        await JsonAnswers(HangUps(handler))(scope, receive, lambda _: anyio.lowlevel.checkpoint())
    assert seen == [(whole, body)]
    assert len(given) == 1, "read once, by the first layer"
