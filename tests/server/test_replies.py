"""Every reply fits the client: no tool result or resource read passes the reply budget, whatever the
bus holds, and nothing a reply leaves out is lost (issue 13, items 3 and 8).

The client side runs over streamable HTTP with the SDK's own client (it refuses an SSE event over
1 MiB) against a real server process on a real Redis; the bus side runs on both backends.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from typing import Any, cast

import anyio
import httpx2
import jsonschema
import pytest
from helpers.http_servers import (
    POST_HEADERS,
    Server,
    bus_env,
    connect,
    http_server,
    modern_call,
    post_initialize,
)
from helpers.mcp_session import checked, text_of
from helpers.mcp_session import connect as connect_in_memory
from mcp.types import CallToolResult, TextContent

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import ClaimedTask, ClaimResult, Lease
from mcp_agentbus.errors import InvalidArgument, NotFound
from mcp_agentbus.ids import MAX_BODY, MAX_EVENT_SCAN_BYTES, MAX_JSON_DEPTH, MAX_REPLY_BYTES
from mcp_agentbus.server.replies import ok
from mcp_agentbus.server.resources import parse
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio

TIMEOUT = 60  # bound on one test's MCP traffic; every test finishes far sooner
BIG_DATA = {"blob": "d" * 65_000}  # just under the 64 KiB bound on one `data`
BIG_BODY = "b" * MAX_BODY


def size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def fresh(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def server(real_redis_url: str | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `agentbus serve --transport http` process on the session's real Redis."""
    if real_redis_url is None:
        pytest.skip("redis-server not installed")
    env = bus_env(real_redis_url, f"replies-{uuid.uuid4().hex[:12]}")
    with http_server(env, tmp_path_factory.mktemp("replies") / "server.log") as served:
        yield served
    served.assert_clean_log()


# --- read_inbox ------------------------------------------------------------------------------------


async def test_seven_maximum_size_messages_reach_their_reader_over_http_each_exactly_once(
    server: Server, mode: str
) -> None:
    reader, sender = fresh("reader"), fresh("sender")
    with anyio.fail_after(TIMEOUT):
        async with connect(server, mode) as bus:
            sent = [
                (await bus.ok("send_message", {"agent": sender, "to": reader, "body": "legit, small"}))[
                    "message_id"
                ]
            ]
            for i in range(7):
                args = {
                    "agent": sender,
                    "to": reader,
                    "subject": f"big {i}",
                    "body": BIG_BODY,
                    "data": BIG_DATA,
                }
                sent.append((await bus.ok("send_message", args))["message_id"])

            got: list[str] = []
            for _ in range(len(sent)):
                call = await bus.call("read_inbox", {"agent": reader})
                read = checked(bus.schemas, "read_inbox", call)
                assert read["messages"], "each call brings at least one message while any is unread"
                assert len(call.model_dump_json(by_alias=True).encode()) < 1024 * 1024
                got += [m["id"] for m in read["messages"]]
                assert read["unread_remaining"] == len(sent) - len(got)
                if read["unread_remaining"]:
                    assert any("call read_inbox again" in n for n in read["notices"]), read["notices"]
                    assert "call read_inbox again" in text_of(call)
                else:
                    break
            assert got == sent  # every one, once, in order
            last = await bus.ok("read_inbox", {"agent": reader})
            assert last["messages"] == [] and last["unread_remaining"] == 0


async def test_a_read_stopped_by_the_budget_marks_read_only_what_it_returned(bus: AgentBus) -> None:
    for i in range(5):
        await bus.inbox.send("sender", "reader", BIG_BODY, subject=f"n{i}", data=BIG_DATA)
    first = await bus.inbox.read("reader")
    shown = first.model_dump(mode="json", by_alias=True)
    assert size(shown["messages"]) <= MAX_REPLY_BYTES
    assert 1 <= len(first.messages) < 5
    assert first.unread_remaining == 5 - len(first.messages)
    assert any("call read_inbox again" in n for n in first.notices), first.notices
    rest = []
    while True:
        more = await bus.inbox.read("reader")
        if not more.messages:
            break
        rest += more.messages
    subjects = [m.subject for m in first.messages + rest]
    assert subjects == [f"n{i}" for i in range(5)]
    assert all(m.body == BIG_BODY and m.data == BIG_DATA for m in first.messages + rest)


async def test_one_message_always_comes_even_when_it_alone_is_large(bus: AgentBus) -> None:
    body = "\x01" * MAX_BODY  # each escapes to six bytes of JSON
    await bus.inbox.send("sender", "reader", body, data=BIG_DATA)
    await bus.inbox.send("sender", "reader", body, data=BIG_DATA)
    read = await bus.inbox.read("reader")
    assert len(read.messages) == 1 and read.messages[0].body == body
    assert read.unread_remaining == 1


async def test_the_inbox_resource_stays_under_the_budget(settings: Settings, mode: str) -> None:
    async with connect_in_memory(settings, mode) as bus:
        for _ in range(5):
            await bus.ok(
                "send_message", {"agent": "sender", "to": "reader", "body": BIG_BODY, "data": BIG_DATA}
            )
        result = await bus.client.read_resource("agentbus://inbox/reader")
        text = result.contents[0].text  # type: ignore[union-attr]
        assert len(text.encode()) <= MAX_REPLY_BYTES
        view = json.loads(text)
        assert 1 <= len(view["messages"]) < 5 and view["unread_remaining"] == 5


# --- read_events -----------------------------------------------------------------------------------


async def test_nine_64_kb_events_are_read_over_http_in_a_few_calls(server: Server, mode: str) -> None:
    topic = f"big.{uuid.uuid4().hex[:8]}"
    with anyio.fail_after(TIMEOUT):
        async with connect(server, mode) as bus:
            start = (await bus.ok("read_events", {}))["cursor"]
            for i in range(9):
                await bus.ok("publish_event", {"agent": "pub", "topic": topic, "data": {"i": i, **BIG_DATA}})
            cursor, seen, calls = start, list[int](), 0
            while len(seen) < 9:
                calls += 1
                assert calls <= 9, "the cursor must advance"
                call = await bus.call("read_events", {"after": cursor, "topics": [topic]})
                read = checked(bus.schemas, "read_events", call)
                assert read["events"] and read["cursor"] != cursor
                assert read["cursor"] == read["events"][-1]["id"]
                seen += [e["data"]["i"] for e in read["events"]]
                cursor = read["cursor"]
            assert seen == list(range(9)) and calls <= 4


async def test_a_read_of_large_events_stops_at_the_budget_and_continues_from_its_cursor(
    bus: AgentBus,
) -> None:
    for i in range(9):
        await bus.events.publish("pub", "big.one", {"i": i, **BIG_DATA})
    first = await bus.events.read(after="0", topics=["big.*"])
    assert 1 <= len(first.events) < 9
    assert size(first.model_dump(mode="json")["events"]) <= MAX_REPLY_BYTES
    assert first.cursor == first.events[-1].id
    seen = [e.data["i"] for e in first.events]
    cursor = first.cursor
    while len(seen) < 9:
        more = await bus.events.read(after=cursor, topics=["big.*"])
        assert more.events
        seen += [e.data["i"] for e in more.events]
        cursor = more.cursor
    assert seen == list(range(9))


async def test_a_filtered_scan_reads_a_bounded_number_of_bytes_and_says_where_to_go_on(
    bus: AgentBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    noise = 1 + MAX_EVENT_SCAN_BYTES // 65_000  # more bytes than one scan may read
    for i in range(noise):
        await bus.events.publish("pub", "noise.x", {"i": i, **BIG_DATA})
    wanted = await bus.events.publish("pub", "wanted.x", {"found": True})

    read_bytes: list[int] = []
    xrange = bus.redis.xrange

    async def counting_xrange(*args: Any, **kwargs: Any) -> Any:
        entries = cast("list[tuple[str, dict[str, str]]]", await xrange(*args, **kwargs))
        read_bytes.append(sum(size(fields) for _, fields in entries))
        return entries

    monkeypatch.setattr(bus.redis, "xrange", counting_xrange)
    with anyio.fail_after(10):  # a scan cut short returns at once, whatever wait_seconds says
        first = await bus.events.read(after="0", topics=["wanted.*"], wait_seconds=5)
    assert first.events == [] and first.cursor != "0"
    assert sum(read_bytes) <= MAX_EVENT_SCAN_BYTES
    assert any("call read_events again" in n for n in first.notices), first.notices
    second = await bus.events.read(after=first.cursor, topics=["wanted.*"])
    assert [e.id for e in second.events] == [wanted.event_id]


async def test_the_events_resource_stays_under_the_budget(settings: Settings, mode: str) -> None:
    async with connect_in_memory(settings, mode) as bus:
        for i in range(9):
            await bus.ok("publish_event", {"agent": "pub", "topic": "big.one", "data": {"i": i, **BIG_DATA}})
        result = await bus.client.read_resource("agentbus://events/big.one")
        text = result.contents[0].text  # type: ignore[union-attr]
        assert len(text.encode()) <= MAX_REPLY_BYTES
        view = json.loads(text)
        assert view["events"] and [e["data"]["i"] for e in view["events"]][-1] == 8  # the newest ones


async def test_a_cursor_past_64_bits_is_invalid_argument(settings: Settings, mode: str) -> None:
    async with connect_in_memory(settings, mode) as bus:
        for cursor in ("99999999999999999999-0", "1-99999999999999999999", "18446744073709551616-0"):
            await bus.err("read_events", {"after": cursor}, "invalid_argument", "cursor")
        await bus.ok("read_events", {"after": "18446744073709551615-18446744073709551615"})


# --- get_workflow ----------------------------------------------------------------------------------


async def _workflow_with_large_results(bus: AgentBus, n: int) -> tuple[str, list[str]]:
    made = await bus.workflows.create(
        "boss", title="big results", tasks=[{"key": f"k{i}", "title": f"t{i}"} for i in range(n)]
    )
    for i in range(n):
        claim = await bus.tasks.claim("worker", task_id=made.task_ids[f"k{i}"])
        assert claim.task is not None and claim.lease is not None
        await bus.tasks.complete(
            "worker", claim.task.id, claim.lease.lease_token, result={"i": i, "blob": "r" * 60_000}
        )
    return made.workflow_id, list(made.task_ids.values())


async def test_get_workflow_leaves_out_results_past_the_budget_and_names_them(bus: AgentBus) -> None:
    workflow_id, ids = await _workflow_with_large_results(bus, 6)
    got = await bus.workflows.get(workflow_id)
    assert got.workflow is not None
    assert size(got.model_dump(mode="json")) <= MAX_REPLY_BYTES
    left_out = got.workflow.results_left_out
    assert left_out and set(left_out) < set(ids)
    assert [t.id for t in got.workflow.tasks] == ids  # every task is still listed
    for task in got.workflow.tasks:
        if task.id in left_out:
            assert task.result is None
        else:
            assert task.result["blob"] == "r" * 60_000
    notice = " ".join(got.notices)
    assert "left out" in notice and all(task_id in notice for task_id in left_out)


async def test_get_workflow_over_mcp_and_its_resource_stay_under_the_budget(
    settings: Settings, mode: str
) -> None:
    async with AgentBus.open(settings) as core:
        workflow_id, _ = await _workflow_with_large_results(core, 6)
    async with connect_in_memory(settings, mode) as bus:
        call = await bus.call("get_workflow", {"workflow_id": workflow_id})
        got = checked(bus.schemas, "get_workflow", call)
        assert size(got) <= MAX_REPLY_BYTES and got["workflow"]["results_left_out"]
        assert "left out" in text_of(call)
        result = await bus.client.read_resource(f"agentbus://workflows/{workflow_id}")
        text = result.contents[0].text  # type: ignore[union-attr]
        assert len(text.encode()) <= MAX_REPLY_BYTES
        assert json.loads(text)["workflow"]["results_left_out"] == got["workflow"]["results_left_out"]


async def test_list_agents_and_the_agents_resource_stay_under_the_budget(
    settings: Settings, mode: str
) -> None:
    caps = [f"{'c' * 60}{i:02}" for i in range(20)]
    async with AgentBus.open(settings) as core:
        for i in range(150):  # about 2 KB each
            await core.presence.heartbeat(f"agent-{i:03}", capabilities=caps, note="n" * 500)
    async with connect_in_memory(settings, mode) as bus:
        call = await bus.call("list_agents", {})
        listed = checked(bus.schemas, "list_agents", call)
        assert size(listed) <= MAX_REPLY_BYTES and 0 < len(listed["agents"]) < 150
        assert any("left out" in n and "capability" in n for n in listed["notices"]), listed["notices"]
        result = await bus.client.read_resource("agentbus://agents")
        text = result.contents[0].text  # type: ignore[union-attr]
        assert len(text.encode()) <= MAX_REPLY_BYTES
        view = json.loads(text)
        assert 0 < len(view["agents"]) < 150 and "left out" in view["notices"][0]


async def test_the_locks_resource_stays_under_the_budget(settings: Settings, mode: str) -> None:
    async with AgentBus.open(settings) as core:
        for i in range(600):  # about 600 bytes each, held by several agents (each holds at most 200)
            await core.locks.acquire(f"holder-{i % 3}", f"{'r' * 400}/{i:03}", ttl_seconds=600)
    async with connect_in_memory(settings, mode) as bus:
        result = await bus.client.read_resource("agentbus://locks")
        text = result.contents[0].text  # type: ignore[union-attr]
        assert len(text.encode()) <= MAX_REPLY_BYTES
        view = json.loads(text)
        assert 0 < len(view["locks"]) < 600 and "left out" in view["notices"][0]


# --- the text content ------------------------------------------------------------------------------


async def test_the_text_gives_what_the_line_does_not_say_without_repeating_the_whole_json(
    settings: Settings, mode: str
) -> None:
    async with connect_in_memory(settings, mode) as bus:
        await bus.ok("create_task", {"title": "t", "payload": {"n": 1}})
        call = await bus.call("claim_task", {"agent": "w"})
        claim = checked(bus.schemas, "claim_task", call)
        text = text_of(call)
        assert claim["lease"]["lease_token"] in text and '"payload":{"n":1}' in text
        assert json.dumps(claim, ensure_ascii=False) not in text
        assert json.dumps(claim, separators=(",", ":"), ensure_ascii=False) not in text

        await bus.ok("send_message", {"agent": "w", "to": "r", "body": "hello there", "data": {"k": 2}})
        call = await bus.call("read_inbox", {"agent": "r"})
        checked(bus.schemas, "read_inbox", call)
        assert "hello there" in text_of(call) and '"data":{"k":2}' in text_of(call)


def test_a_part_too_large_for_the_text_is_counted_and_the_rest_still_shown() -> None:
    task = ClaimedTask(
        id="t-1",
        title="t",
        description="",
        capability="any",
        priority="normal",
        attempt=1,
        max_attempts=3,
        inputs={"a": "x" * MAX_REPLY_BYTES},
    )
    lease = Lease(lease_token="tok-123", fence=4, expires_at="2026-01-01T00:00:00.000Z")
    reply = ok(ClaimResult(task=task, lease=lease), "Claimed t-1.", None, lease="lease", task="task")
    text = text_of(reply)
    assert len(text.encode()) <= MAX_REPLY_BYTES
    assert '"lease_token":"tok-123"' in text and "task: " not in text
    assert "1 task part(s) too large for this text" in text
    assert reply.structured_content is not None
    assert reply.structured_content["task"]["inputs"]["a"] == "x" * MAX_REPLY_BYTES


# --- NaN and Infinity ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
async def test_nan_and_infinity_are_refused_in_every_json_argument(bus: AgentBus, bad: float) -> None:
    with pytest.raises(InvalidArgument, match="payload"):
        await bus.tasks.create("boss", title="t", payload={"x": bad})
    with pytest.raises(InvalidArgument, match="payload of task 'a'"):
        await bus.workflows.create("boss", title="w", tasks=[{"key": "a", "title": "a", "payload": [bad]}])
    with pytest.raises(InvalidArgument, match="data"):
        await bus.inbox.send("boss", "worker", "hi", data=bad)
    with pytest.raises(InvalidArgument, match="data"):
        await bus.events.publish("boss", "build.done", {"nested": {"v": bad}})
    task = await bus.tasks.create("boss", title="t")
    claim = await bus.tasks.claim("worker", task_id=task.task_id)
    assert claim.lease is not None
    with pytest.raises(InvalidArgument, match="result"):
        await bus.tasks.complete("worker", task.task_id, claim.lease.lease_token, result={"score": bad})


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
async def test_nan_in_a_json_rpc_body_over_http_is_invalid_argument(server: Server, literal: str) -> None:
    """The SDK parses a JSON-RPC body's NaN/Infinity into floats (its client turns them into null before
    sending, so this one is written by hand): the tool refuses them instead of storing them as null."""
    session = post_initialize(server).headers["mcp-session-id"]
    headers = {**POST_HEADERS, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
    body = (
        '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"create_task",'
        f'"arguments":{{"agent":"boss","title":"nan","payload":{{"score":{literal}}}}}}}}}'
    )
    try:
        response = httpx2.post(server.mcp, content=body, headers=headers, timeout=10)
        result = response.json()["result"]  # one JSON body: a call that cannot wait (json_answers.py)
        assert result["isError"] is True, result
        error = result["structuredContent"]["error"]
        assert error["code"] == "invalid_argument" and "payload" in error["message"], error
        assert "NaN or Infinity" in error["message"], error
    finally:
        httpx2.delete(server.mcp, headers={"mcp-session-id": session}, timeout=5)


# --- values nothing could read back -----------------------------------------------------------------


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"in": value}
    return value


UNREADABLE = {"nested past the bound": nested(MAX_JSON_DEPTH + 1), "a lone surrogate": {"note": "a\ud800b"}}


@pytest.mark.parametrize("bad", UNREADABLE.values(), ids=UNREADABLE.keys())
async def test_a_value_nothing_could_read_back_is_refused_in_every_json_argument(
    bus: AgentBus, bad: Any
) -> None:
    """Stored, such a value would fail every read of it (the reply cannot be made): a message marked read
    and never shown, a task claimed that no worker gets. Each write refuses it, and writes nothing."""
    with pytest.raises(InvalidArgument, match="payload"):
        await bus.tasks.create("boss", title="t", payload=bad)
    with pytest.raises(InvalidArgument, match="payload of task 'a'"):
        await bus.workflows.create("boss", title="w", tasks=[{"key": "a", "title": "a", "payload": bad}])
    with pytest.raises(InvalidArgument, match="data"):
        await bus.inbox.send("boss", "worker", "hi", data=bad)
    with pytest.raises(InvalidArgument, match="data"):
        await bus.events.publish("boss", "build.done", bad)
    with pytest.raises(InvalidArgument, match="value"):
        await bus.state.set("boss", "plan", value=bad)
    assert (await bus.inbox.read("worker")).messages == []
    assert (await bus.state.get("plan")).entries == []
    assert (await bus.events.recent("build.done")).events == []
    task = await bus.tasks.create("boss", title="t")
    claim = await bus.tasks.claim("worker", task_id=task.task_id)
    assert claim.lease is not None and claim.task is not None and claim.task.id == task.task_id
    with pytest.raises(InvalidArgument, match="result"):
        await bus.tasks.complete("worker", task.task_id, claim.lease.lease_token, result=bad)
    done = await bus.tasks.complete("worker", task.task_id, claim.lease.lease_token, result={"ok": True})
    assert done.state == "done", "the refusal kept the lease"


async def test_a_value_nested_to_the_bound_goes_and_comes_back_over_http(server: Server, mode: str) -> None:
    """The bound is inside what a reply can carry: a message and a state value nested MAX_JSON_DEPTH
    levels are read back whole; one level more is refused, and the reader's inbox is untouched."""
    reader, sender, key = fresh("reader"), fresh("sender"), fresh("deep")
    deepest = nested(MAX_JSON_DEPTH)
    with anyio.fail_after(TIMEOUT):
        async with connect(server, mode) as bus:
            await bus.err(
                "send_message",
                {"agent": sender, "to": reader, "body": "b", "data": nested(MAX_JSON_DEPTH + 1)},
                "invalid_argument",
                f"more than {MAX_JSON_DEPTH} levels",
            )
            await bus.ok("send_message", {"agent": sender, "to": reader, "body": "b", "data": deepest})
            (message,) = (await bus.ok("read_inbox", {"agent": reader}))["messages"]
            assert message["data"] == deepest
            await bus.ok("set_state", {"agent": sender, "key": key, "value": deepest})
            (entry,) = (await bus.ok("get_state", {"key": key}))["entries"]
            assert entry["value"] == deepest


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_2026_era_answer_is_utf8_json_not_escaped(server: Server, streamed: bool) -> None:
    """What the bus keeps within MAX_REPLY_BYTES of UTF-8 goes out as UTF-8, in one JSON body or (a read
    that waits and reports progress) an event stream: escaped (the SDK's default), a reply of emoji
    would be three times as large, past what an SSE client reads in one event."""
    reader, text = fresh("reader"), "中文 🙂 " * 1_000
    send, send_headers = modern_call("send_message", {"agent": fresh("sender"), "to": reader, "body": text})
    read, read_headers = modern_call("read_inbox", {"agent": reader, "wait_seconds": 10 if streamed else 0})
    read["params"]["_meta"]["progressToken"] = "p"  # a progress notification turns the answer into a stream
    async with httpx2.AsyncClient(timeout=TIMEOUT) as http, anyio.create_task_group() as tg:
        answers: list[httpx2.Response] = []

        async def reads() -> None:
            answers.append(await http.post(server.mcp, json=read, headers=read_headers))

        if streamed:
            tg.start_soon(reads)
            await anyio.sleep(1.5)  # past the first progress notification
        sent = await http.post(server.mcp, json=send, headers=send_headers)
        assert sent.status_code == 200, sent.text
        if not streamed:
            await reads()
    (answer,) = answers
    assert answer.status_code == 200, answer.text
    kind = "text/event-stream" if streamed else "application/json"
    assert answer.headers["content-type"].startswith(kind)
    assert text.encode() in answer.content and b"\\ud83d" not in answer.content
    assert len(answer.content) < 3 * len(text.encode())  # the structured result and the text, and a little


# --- resource URIs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri", ["agentbus://inbox/bob\n", "agentbus://workflows/wf-1\n", "agentbus://events/task.*\n"]
)
def test_a_resource_uri_with_a_trailing_newline_is_refused(uri: str) -> None:
    with pytest.raises((InvalidArgument, NotFound)):
        parse(uri)


@pytest.mark.parametrize(
    "structured",
    [
        pytest.param({"notices": [], "joined": True}, id="fields-missing"),
        pytest.param(
            {
                "notices": [],
                "agent": {},
                "joined": "yes",
                "leases_extended": [],
                "locks_extended": [],
                "live_agents": 1,
                "unread_messages": 0,
            },
            id="wrong-types",
        ),
    ],
)
def test_the_tests_check_a_result_against_its_tools_result_model(structured: dict[str, Any]) -> None:
    """The server does not check its results against their models (`app._tool`); `checked`, which every
    successful call in these tests goes through, does."""
    result = CallToolResult(
        content=[TextContent(type="text", text="a1 is alive.")], structured_content=structured
    )
    with pytest.raises(jsonschema.ValidationError):
        checked({"heartbeat": {"type": "object"}}, "heartbeat", result)
