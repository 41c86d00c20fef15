"""send_message and read_inbox through the real MCP client, in both protocol eras and on both backends:
fan-out, threads, peeking, waits with progress, the notices piggybacked on other calls, and bad input."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from helpers import BACKENDS_AND_ERAS, backend_url, fresh_settings
from helpers.mcp_session import Bus, connect, fill, text_of

from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio

TIMEOUT = 20  # bound on any one test's MCP traffic; every test finishes far sooner
MESSAGE_ID = re.compile(r"^m-[0-9]+$")

Progress = list[tuple[float, float | None, str | None]]


@pytest.fixture(
    scope="module",
    params=BACKENDS_AND_ERAS,
    ids=lambda p: "-".join(p),
)
async def inbox_bus(request: pytest.FixtureRequest, real_redis_url: str | None) -> AsyncIterator[Bus]:
    """One server and session per backend and era for this module. Tests share its namespace, so each
    uses agent ids and capabilities of its own (and no `*` broadcast, which would reach the others')."""
    backend, mode = request.param
    url = backend_url(backend, real_redis_url)
    async with connect(fresh_settings(url), mode) as bus:
        yield bus


@dataclass
class Lapsed:
    """What time left behind on the shared server, prepared once for the tests that need it."""

    leases: dict[str, tuple[str, str]]  # use -> (agent, task) whose lease the reaper took back, untold
    gone: str  # an agent whose heartbeat lapsed
    capability: str  # a capability only that agent had


LAPSED_USES = ("told", "read-times-out", "claim-times-out", "refused")


@pytest.fixture(scope="module")
async def lapsed(inbox_bus: Bus) -> Lapsed:
    """Leases of 1 s taken back by the reaper (it runs every 0.1 s here) and a heartbeat of 1 s lapsed,
    all at once, so the tests that need them share one wait."""
    bus = inbox_bus
    capability, gone = fresh("only-gone"), fresh("gone")
    with anyio.fail_after(TIMEOUT):
        await bus.ok("heartbeat", {"agent": gone, "capabilities": [capability], "ttl_seconds": 1})
        tasks = [{"key": use, "title": use, "capability": capability} for use in LAPSED_USES]
        created = await bus.ok("create_workflow", {"title": "short leases", "tasks": tasks})
        leases = {}
        for use in LAPSED_USES:
            agent, task_id = fresh(use), created["task_ids"][use]
            await bus.ok("claim_task", {"agent": agent, "task_id": task_id, "lease_seconds": 1})
            leases[use] = (agent, task_id)
        while True:  # calls that name no agent, so nothing is told yet
            view = await bus.ok("get_workflow", {"workflow_id": created["workflow_id"]})
            alive = await bus.ok("list_agents", {"capability": capability})
            if not alive["agents"] and all(t["state"] != "claimed" for t in view["workflow"]["tasks"]):
                break
            await anyio.sleep(0.05)
    return Lapsed(leases, gone, capability)


def fresh(name: str) -> str:
    """An agent id or capability no other test of the shared session uses."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def read(bus: Bus, agent: str, **args: Any) -> dict[str, Any]:
    return await bus.ok("read_inbox", {"agent": agent, **args})


async def send(bus: Bus, sender: str, to: str, body: str, **args: Any) -> dict[str, Any]:
    return await bus.ok("send_message", {"agent": sender, "to": to, "body": body, **args})


async def cursor_now(bus: Bus) -> str:
    """The event log's cursor as of now."""
    cursor: str = (await bus.ok("read_events", {"limit": 1}))["cursor"]
    return cursor


async def message_events(bus: Bus, after: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = (
        await bus.ok("read_events", {"after": after, "topics": ["message.*"], "limit": 500})
    )["events"]
    return events


def first_line(result_text: str) -> str:
    return result_text.splitlines()[0]


def unread_notices(notices: list[str]) -> list[str]:
    return [n for n in notices if "unread message" in n]


def assert_recent(timestamp: str) -> None:
    """An ISO 8601 UTC timestamp of about now (generous: clocks of test hosts vary)."""
    assert timestamp.endswith("Z"), timestamp
    at = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - at) < timedelta(minutes=5), timestamp


# --- end to end ------------------------------------------------------------------------------------


async def test_a_role_message_reaches_every_live_agent_with_the_capability(inbox_bus: Bus) -> None:
    bus = inbox_bus
    a, b, c, outsider = fresh("a"), fresh("b"), fresh("c"), fresh("outsider")
    review = fresh("review")
    data = {"files": ["src/auth.py", "src/é.py"], "lines": 120, "urgent": True, "ref": None, "ratio": 0.5}
    with anyio.fail_after(TIMEOUT):
        await bus.ok("heartbeat", {"agent": a, "capabilities": [review]})  # the sender is left out
        await bus.ok("heartbeat", {"agent": b, "capabilities": [review]})
        await bus.ok("heartbeat", {"agent": c, "capabilities": ["python", review]})
        await bus.ok("heartbeat", {"agent": outsider, "capabilities": ["python"]})
        before = await cursor_now(bus)

        call = await bus.call(
            "send_message",
            {
                "agent": a,
                "to": f"role:{review}",
                "subject": "Please review",
                "body": "See PR 7.",
                "data": data,
            },
        )
        sent = call.structured_content
        assert call.is_error is not True and sent is not None
        assert MESSAGE_ID.match(sent["message_id"]), sent
        assert sorted(sent["recipients"]) == [b, c]
        assert sent["thread_id"] == sent["message_id"], "a new message starts its own thread"
        assert sent["undelivered"] == [] and sent["duplicate"] is False and sent["notices"] == []
        line = first_line(text_of(call))
        assert line.startswith(f"Sent {sent['message_id']} to ") and b in line and c in line, line
        assert f"(thread {sent['thread_id']})" in line

        expected = {
            "id": sent["message_id"],
            "from": a,
            "to": f"role:{review}",
            "subject": "Please review",
            "body": "See PR 7.",
            "data": data,
            "thread_id": sent["message_id"],
            "reply_to": None,
        }
        for reader in (b, c):
            read_call = await bus.call("read_inbox", {"agent": reader})
            got = await read(bus, reader, peek=True)  # the call above marked it read
            assert got["messages"] == [] and got["unread_remaining"] == 0
            result = read_call.structured_content
            assert result is not None and read_call.is_error is not True
            assert result["unread_remaining"] == 0 and result["notices"] == []
            [message] = result["messages"]
            assert_recent(message.pop("sent_at"))
            assert message == expected
            lines = text_of(read_call).splitlines()
            assert lines[0] == "1 message(s), 0 more unread."
            assert lines[1] == f"{sent['message_id']} from {a}: Please review"
            assert (await read(bus, reader)) == {"notices": [], "messages": [], "unread_remaining": 0}

        for nobody in (a, outsider):
            assert (await read(bus, nobody))["messages"] == []

        events = await message_events(bus, before)
        assert [e["topic"] for e in events] == ["message.sent", "message.read", "message.read"]
        assert events[0]["agent"] == a
        assert events[0]["data"]["message"] == sent["message_id"]
        assert sorted(events[0]["data"]["recipients"]) == [b, c]
        assert [e["agent"] for e in events[1:]] == [b, c]


async def test_broadcast_and_messages_to_absent_agents(settings: Settings, mode: str) -> None:
    """`*` reaches every live agent but the sender; a message to an agent id waits for it."""
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:
            await bus.ok("heartbeat", {"agent": "lonely"})
            await bus.err(
                "send_message", {"agent": "lonely", "to": "*", "body": "hi"}, "not_found", "no live"
            )
            for name in ("b", "c"):
                await bus.ok("heartbeat", {"agent": name})
            everyone = await send(bus, "lonely", "*", "standup in 5")
            assert sorted(everyone["recipients"]) == ["b", "c"] and everyone["notices"] == []
            for name in ("b", "c"):
                [got] = (await read(bus, name))["messages"]
                assert (got["from"], got["to"], got["body"]) == ("lonely", "*", "standup in 5")
            assert (await read(bus, "lonely"))["messages"] == []

            # "ghost" never said it was alive: a broadcast skips it, a direct message waits for it.
            direct = await send(bus, "b", "ghost", "when you are back")
            assert direct["recipients"] == ["ghost"] and direct["undelivered"] == []
            assert direct["notices"] == ["ghost is not alive on the bus now; the message waits in its inbox."]
            beat = await bus.ok("heartbeat", {"agent": "ghost"})
            assert beat["unread_messages"] == 1
            [waiting] = (await read(bus, "ghost"))["messages"]
            assert waiting["id"] == direct["message_id"] and waiting["body"] == "when you are back"


async def test_a_reply_stays_in_the_thread_and_thread_filters_the_inbox(inbox_bus: Bus) -> None:
    bus = inbox_bus
    a, b, c = fresh("a"), fresh("b"), fresh("c")
    with anyio.fail_after(TIMEOUT):
        question = await send(bus, a, b, "Is the schema final?", subject="schema")
        unrelated = await send(bus, c, a, "lunch?")
        [got] = (await read(bus, b))["messages"]
        assert got["id"] == question["message_id"]

        reply = await send(bus, b, a, "Yes, v3.", reply_to=got["id"])
        assert reply["thread_id"] == question["thread_id"] == question["message_id"]
        assert reply["message_id"] != question["message_id"]

        only_thread = await read(bus, a, thread_id=question["thread_id"])
        [answer] = only_thread["messages"]
        assert answer["id"] == reply["message_id"] and answer["from"] == b
        assert answer["reply_to"] == question["message_id"] and answer["thread_id"] == question["thread_id"]
        assert only_thread["unread_remaining"] == 1, "the other thread's message is still unread"
        rest = await read(bus, a)
        assert [m["id"] for m in rest["messages"]] == [unrelated["message_id"]]
        assert rest["messages"][0]["thread_id"] == unrelated["message_id"]

        # A thread of one's own naming; a reply keeps it, and an explicit thread_id wins over reply_to's.
        named = await send(bus, a, b, "kickoff", thread_id="design:auth-v2")
        assert named["thread_id"] == "design:auth-v2"
        follow = await send(bus, b, a, "ok", reply_to=named["message_id"])
        assert follow["thread_id"] == "design:auth-v2"
        moved = await send(bus, b, a, "split off", reply_to=named["message_id"], thread_id="side")
        assert moved["thread_id"] == "side"
        by_thread = await read(bus, a, thread_id="design:auth-v2")
        assert [m["id"] for m in by_thread["messages"]] == [follow["message_id"]]
        [side] = (await read(bus, a, thread_id="side"))["messages"]
        assert side["reply_to"] == named["message_id"] and side["thread_id"] == "side"


async def test_a_thread_filter_finds_messages_behind_many_unread_others(inbox_bus: Bus) -> None:
    bus = inbox_bus
    a, b = fresh("a"), fresh("b")
    with anyio.fail_after(TIMEOUT):
        for i in range(120):
            await send(bus, a, b, f"noise {i}", thread_id="noise")
        wanted = await send(bus, a, b, "the one", thread_id="signal")
        got = await read(bus, b, thread_id="signal")
        assert [m["id"] for m in got["messages"]] == [wanted["message_id"]]
        assert got["unread_remaining"] == 120
        page = await read(bus, b, limit=100)
        assert [m["body"] for m in page["messages"]] == [f"noise {i}" for i in range(100)]
        assert page["unread_remaining"] == 20
        tail = await read(bus, b, limit=100)
        assert [m["body"] for m in tail["messages"]] == [f"noise {i}" for i in range(100, 120)]
        assert tail["unread_remaining"] == 0


async def test_peek_marks_nothing_read_and_limit_pages_oldest_first(inbox_bus: Bus) -> None:
    bus = inbox_bus
    a, b = fresh("a"), fresh("b")
    with anyio.fail_after(TIMEOUT):
        ids = [(await send(bus, a, b, f"body {i}", subject=f"s{i}"))["message_id"] for i in range(5)]
        for _ in range(2):
            peeked = await read(bus, b, peek=True, limit=2)
            assert [m["id"] for m in peeked["messages"]] == ids[:2]
            assert peeked["unread_remaining"] == 5
        assert (await bus.ok("heartbeat", {"agent": b}))["unread_messages"] == 5

        first = await bus.call("read_inbox", {"agent": b, "limit": 2})
        assert first_line(text_of(first)) == "2 message(s), 3 more unread."
        assert first.structured_content is not None
        assert [m["id"] for m in first.structured_content["messages"]] == ids[:2]
        second = await read(bus, b, limit=2)
        assert [m["id"] for m in second["messages"]] == ids[2:4] and second["unread_remaining"] == 1
        assert (await bus.ok("heartbeat", {"agent": b}))["unread_messages"] == 1
        last = await read(bus, b, limit=2)
        assert [m["id"] for m in last["messages"]] == ids[4:] and last["unread_remaining"] == 0
        assert (await read(bus, b, limit=2))["messages"] == []


async def test_peek_takes_a_lax_boolean_like_every_bool_argument(inbox_bus: Bus) -> None:
    """Arguments are validated in pydantic's lax mode: the string "yes" is true (as "true", "on", 1
    are), so it peeks; a string that is no boolean is refused (see the bad-input rows)."""
    bus = inbox_bus
    a, b = fresh("a"), fresh("b")
    with anyio.fail_after(TIMEOUT):
        sent = await send(bus, a, b, "still here")
        for truthy in ("yes", "true", "on", 1):
            got = await read(bus, b, peek=truthy)
            assert [m["id"] for m in got["messages"]] == [sent["message_id"]], truthy
            assert got["unread_remaining"] == 1
        got = await read(bus, b, peek="no")
        assert [m["id"] for m in got["messages"]] == [sent["message_id"]]
        assert got["unread_remaining"] == 0


async def test_the_largest_message_is_accepted_whole(inbox_bus: Bus) -> None:
    bus = inbox_bus
    a, b = fresh("a"), fresh("b")
    body = ("ünïcødé ✓ " * 2000)[:16_384]
    subject = "s" * 200
    data = {"blob": "y" * (65_536 - len('{"blob":""}'))}  # exactly 64 KiB of JSON
    with anyio.fail_after(TIMEOUT):
        await send(bus, a, b, body, subject=subject, data=data)
        [got] = (await read(bus, b))["messages"]
    assert got["body"] == body and got["subject"] == subject and got["data"] == data


async def test_data_of_every_json_type_round_trips(inbox_bus: Bus) -> None:
    bus = inbox_bus
    a, b = fresh("a"), fresh("b")
    values: list[Any] = [
        None,
        0,
        False,
        "",
        [],
        {},
        "text",
        -1.5,
        [1, "two", None],
        {"nested": {"x": [True]}},
    ]
    with anyio.fail_after(TIMEOUT):
        for value in values:
            await send(bus, a, b, "with data", data=value)
        await send(bus, a, b, "without data")
        got = await read(bus, b)
    assert [m["data"] for m in got["messages"]] == [*values, None]


# --- waiting ---------------------------------------------------------------------------------------


async def test_a_waiting_read_wakes_for_a_message_from_another_client(settings: Settings, mode: str) -> None:
    long_waits = settings.model_copy(update={"max_wait_seconds": 30})
    got: dict[str, Any] = {}
    updates: Progress = []
    waiting, first_done, second_done = anyio.Event(), anyio.Event(), anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))
        waiting.set()

    with anyio.fail_after(TIMEOUT):
        async with connect(long_waits, mode) as reader, connect(long_waits, mode) as writer:

            async def wait_for_mail() -> None:
                got["first"] = await reader.ok(
                    "read_inbox", {"agent": "a", "wait_seconds": 10}, progress_callback=on_progress
                )
                first_done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_for_mail)
                await waiting.wait()  # the read is waiting on the server (it reported progress)
                sent = await writer.ok("send_message", {"agent": "b", "to": "a", "body": "wake up"})
                with anyio.fail_after(5):  # the read would wait 10 s
                    await first_done.wait()

            # The same again with the waiting call and the sending call on one session at once.
            async def wait_again() -> None:
                got["second"] = await reader.ok("read_inbox", {"agent": "a", "wait_seconds": 10})
                second_done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_again)
                await anyio.sleep(0.2)
                again = await reader.ok("send_message", {"agent": "c", "to": "a", "body": "and again"})
                with anyio.fail_after(5):
                    await second_done.wait()

    [message] = got["first"]["messages"]
    assert message["id"] == sent["message_id"] and message["body"] == "wake up" and message["from"] == "b"
    assert got["first"]["notices"] == []
    assert [m["id"] for m in got["second"]["messages"]] == [again["message_id"]]
    assert updates
    for progress, total, text in updates:
        assert total == 10 and 0 <= progress <= total
        assert text and "waiting for a message" in text


async def test_two_waiting_readers_of_one_inbox_never_get_the_same_message(
    settings: Settings, mode: str
) -> None:
    """The same agent waiting through two servers (say, a restarted session and its ghost)."""
    long_waits = settings.model_copy(update={"max_wait_seconds": 30})
    got: list[dict[str, Any]] = []
    with anyio.fail_after(TIMEOUT):
        async with connect(long_waits, mode) as one, connect(long_waits, mode) as two:

            async def wait_in(bus: Bus) -> None:
                got.append(await read(bus, "a", wait_seconds=10))

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_in, one)
                tg.start_soon(wait_in, two)
                await anyio.sleep(0.3)
                first = await send(one, "b", "a", "first")
                await anyio.sleep(0.3)
                second = await send(two, "b", "a", "second")
            assert (await read(one, "a"))["messages"] == []
    ids = sorted(m["id"] for result in got for m in result["messages"])
    assert ids == sorted([first["message_id"], second["message_id"]])
    assert all(len(result["messages"]) == 1 for result in got), got


async def test_a_waiting_read_of_one_thread_lets_other_threads_pass(inbox_bus: Bus) -> None:
    bus = inbox_bus
    a, b = fresh("a"), fresh("b")
    got: dict[str, Any] = {}
    done = anyio.Event()
    with anyio.fail_after(TIMEOUT):

        async def wait_for_thread() -> None:
            got["result"] = await read(bus, a, thread_id="release", wait_seconds=4)
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_thread)
            await anyio.sleep(0.2)
            other = await send(bus, b, a, "unrelated", thread_id="chatter")
            await anyio.sleep(0.3)
            assert not done.is_set(), "a message of another thread ended the wait"
            wanted = await send(bus, b, a, "ship it", thread_id="release")
            with anyio.fail_after(3):
                await done.wait()
        assert [m["id"] for m in got["result"]["messages"]] == [wanted["message_id"]]
        assert got["result"]["unread_remaining"] == 1
        assert [m["id"] for m in (await read(bus, a))["messages"]] == [other["message_id"]]


async def test_a_waiting_read_sends_progress_until_it_times_out(mode: str) -> None:
    """(Server-side waiting and the era's progress plumbing, the same on both backends: embedded only.)"""
    updates: Progress = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    with anyio.fail_after(TIMEOUT):
        async with connect(fresh_settings(f"memory://{uuid.uuid4().hex}"), mode) as bus:
            started = anyio.current_time()
            result = await bus.ok("read_inbox", {"wait_seconds": 1.5}, progress_callback=on_progress)
            waited = anyio.current_time() - started
    assert result == {"notices": [], "messages": [], "unread_remaining": 0}
    assert waited >= 1.4, "an empty inbox waits the whole wait_seconds"
    assert updates, "no progress notification arrived during a 1.5 s wait"
    progresses = [p for p, _, _ in updates]
    assert progresses == sorted(progresses) and len(set(progresses)) == len(progresses)
    for progress, total, message in updates:
        assert total == 1.5 and progress <= total
        assert message and "waiting for a message" in message


async def test_a_wait_above_the_cap_answered_at_once_says_nothing_of_the_cap(inbox_bus: Bus) -> None:
    """The cap's notice is for a call that really waited the cap (tests/core/test_waiting.py)."""
    bus = inbox_bus
    a, b = fresh("a"), fresh("b")
    with anyio.fail_after(TIMEOUT):
        await send(bus, a, b, "already here")
        got = await read(bus, b, wait_seconds=600)  # the shared server's cap is 5 s
    assert [m["body"] for m in got["messages"]] == ["already here"]
    assert got["notices"] == []


# --- notices ---------------------------------------------------------------------------------------


async def test_unread_messages_are_noticed_on_every_other_call(inbox_bus: Bus) -> None:
    bus = inbox_bus
    a, b = fresh("a"), fresh("b")
    with anyio.fail_after(TIMEOUT):
        await bus.ok("heartbeat", {"agent": a})
        assert (await bus.ok("heartbeat", {"agent": a}))["notices"] == []
        sent = await send(bus, b, a, "details inside", subject="Build is red")
        assert sent["notices"] == [], "the sender is not told about the recipient's inbox"

        expected = f"1 unread message(s) in your inbox, newest from {b}: 'Build is red' (read_inbox)."
        beat_call = await bus.call("heartbeat", {"agent": a})
        beat = beat_call.structured_content
        assert beat is not None and beat["notices"] == [expected] and beat["unread_messages"] == 1
        assert f"Notice: {expected}" in text_of(beat_call)
        claim = await bus.ok("claim_task", {"agent": a, "capabilities": [fresh("none")]})
        assert claim["task"] is None and claim["notices"] == [expected]

        long_body = "word " * 40  # no subject: the body is quoted, cut to 80 characters
        await send(bus, b, a, long_body)
        beat = await bus.ok("heartbeat", {"agent": a})
        quoted = "'" + " ".join(long_body.split())[:79] + "…'"
        assert beat["notices"] == [
            f"2 unread message(s) in your inbox, newest from {b}: {quoted} (read_inbox)."
        ]

        # read_inbox reports the inbox itself: no unread notice, even with messages left unread
        partial = await read(bus, a, limit=1)
        assert len(partial["messages"]) == 1 and partial["unread_remaining"] == 1
        assert partial["notices"] == []
        beat = await bus.ok("heartbeat", {"agent": a})
        assert unread_notices(beat["notices"]) == [
            f"1 unread message(s) in your inbox, newest from {b}: {quoted} (read_inbox)."
        ]
        await read(bus, a)
        assert (await bus.ok("heartbeat", {"agent": a}))["notices"] == []


async def test_the_default_agent_is_noticed_too(settings: Settings, mode: str) -> None:
    """Calls that name no agent act as the server's AGENTBUS_AGENT, and carry its notices."""
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as bus:  # the default agent is "tester"
            await send(bus, "boss", "tester", "ping", subject="status?")
            beat = await bus.ok("heartbeat")
            assert beat["notices"] == [
                "1 unread message(s) in your inbox, newest from boss: 'status?' (read_inbox)."
            ]
            # a read-only tool is made for the default agent too (every tool takes `agent`)
            assert (await bus.ok("list_agents"))["notices"] == beat["notices"]
            got = await bus.ok("read_inbox")
            assert [m["body"] for m in got["messages"]] == ["ping"] and got["notices"] == []
            assert (await bus.ok("heartbeat"))["notices"] == []


LEASE_TAKEN_BACK = (
    "Your lease on task {} expired and the task was taken back: stop work on it "
    "(complete_task would get lease_lost)."
)


def lease_notices(notices: list[str]) -> list[str]:
    return [n for n in notices if n.startswith("Your lease on task ")]


async def test_a_lease_taken_back_is_noticed_once(inbox_bus: Bus, lapsed: Lapsed) -> None:
    worker, task_id = lapsed.leases["told"]
    with anyio.fail_after(TIMEOUT):
        told = await read(inbox_bus, worker)
        assert told["notices"] == [LEASE_TAKEN_BACK.format(task_id)]
        again = await inbox_bus.ok("send_message", {"agent": worker, "to": fresh("peer"), "body": "x"})
        assert lease_notices(again["notices"]) == [], "a lease taken back is told once"


@pytest.mark.parametrize("how", ["read-times-out", "claim-times-out"])
async def test_a_lease_taken_back_is_told_by_a_waiting_call(inbox_bus: Bus, lapsed: Lapsed, how: str) -> None:
    worker, task_id = lapsed.leases[how]
    with anyio.fail_after(TIMEOUT):
        if how == "read-times-out":
            result = await read(inbox_bus, worker, wait_seconds=0.3)
        else:
            result = await inbox_bus.ok(
                "claim_task", {"agent": worker, "capabilities": [fresh("none")], "wait_seconds": 0.3}
            )
        told = lease_notices(result["notices"])
    assert told == [LEASE_TAKEN_BACK.format(task_id)], "told by the waiting call itself"


async def test_a_lease_taken_back_is_told_after_a_refused_call(inbox_bus: Bus, lapsed: Lapsed) -> None:
    worker, task_id = lapsed.leases["refused"]
    with anyio.fail_after(TIMEOUT):
        await inbox_bus.err(
            "send_message",
            {"agent": worker, "to": fresh("peer"), "body": "x", "reply_to": "m-999999"},
            "not_found",
            "m-999999",
        )
        beat = await inbox_bus.ok("heartbeat", {"agent": worker})
    assert lease_notices(beat["notices"]) == [LEASE_TAKEN_BACK.format(task_id)]


async def test_a_lock_about_to_expire_is_noticed_on_every_call(inbox_bus: Bus) -> None:
    bus = inbox_bus
    worker, resource = fresh("worker"), fresh("res") + "/notes.md"
    with anyio.fail_after(TIMEOUT):
        lock = await bus.ok("acquire_lock", {"agent": worker, "resource": resource, "ttl_seconds": 2})
        assert lock["acquired"] is True and lock["notices"] == []
        # Told once less than half of it is left: sleep until 0.8 s are left (of 2 s).
        expires = datetime.fromisoformat(lock["expires_at"].replace("Z", "+00:00"))
        await anyio.sleep(max(0.0, (expires - timedelta(seconds=0.8) - datetime.now(UTC)).total_seconds()))
        for tool, args in (("read_inbox", {}), ("send_message", {"to": fresh("peer"), "body": "x"})):
            result = await bus.ok(tool, {"agent": worker, **args})
            [notice] = [n for n in result["notices"] if n.startswith("Your lock")]
            assert re.fullmatch(
                rf"Your lock on {re.escape(resource)} expires in [01] s: heartbeat to keep it\.", notice
            ), notice
        released = await bus.ok(
            "release_lock", {"agent": worker, "resource": resource, "lock_token": lock["lock_token"]}
        )
        assert released["released"] is True and released["notices"] == []


async def test_role_messages_skip_agents_whose_heartbeat_lapsed(inbox_bus: Bus, lapsed: Lapsed) -> None:
    bus = inbox_bus
    sender = fresh("sender")
    with anyio.fail_after(TIMEOUT):
        await bus.err(
            "send_message",
            {"agent": sender, "to": f"role:{lapsed.capability}", "body": "anyone?"},
            "not_found",
            lapsed.capability,
        )
        direct = await send(bus, sender, lapsed.gone, "for when you are back")
        assert direct["recipients"] == [lapsed.gone]
        assert direct["notices"] == [
            f"{lapsed.gone} is not alive on the bus now; the message waits in its inbox."
        ]
        [waiting] = (await read(bus, lapsed.gone))["messages"]
        assert waiting["body"] == "for when you are back"


async def test_a_repeated_idempotency_key_sends_once(inbox_bus: Bus) -> None:
    bus = inbox_bus
    a, b, c = fresh("a"), fresh("b"), fresh("c")
    args = {"agent": a, "to": b, "body": "deploy done", "subject": "deploy", "idempotency_key": "deploy-42"}
    with anyio.fail_after(TIMEOUT):
        before = await cursor_now(bus)
        first = await bus.ok("send_message", args)
        repeat_call = await bus.call("send_message", args)
        repeat = repeat_call.structured_content
        assert repeat is not None and first["duplicate"] is False and repeat["duplicate"] is True
        assert {k: v for k, v in repeat.items() if k != "duplicate"} == {
            k: v for k, v in first.items() if k != "duplicate"
        }
        assert first_line(text_of(repeat_call)).endswith("earlier, with this key.")
        got = await read(bus, b)
        assert [m["id"] for m in got["messages"]] == [first["message_id"]]
        # still a duplicate once the message was read: nothing new arrives
        assert (await bus.ok("send_message", args))["message_id"] == first["message_id"]
        assert (await read(bus, b))["messages"] == []
        sent_events = [e for e in await message_events(bus, before) if e["topic"] == "message.sent"]
        assert [e["data"]["message"] for e in sent_events] == [first["message_id"]]

        # keys are per sender: another agent's same key is another message
        other = await bus.ok("send_message", {**args, "agent": c})
        assert other["duplicate"] is False and other["message_id"] != first["message_id"]
        assert [m["from"] for m in (await read(bus, b))["messages"]] == [c]


# --- inbox_full ------------------------------------------------------------------------------------


async def test_a_full_inbox_refuses_new_messages_until_they_are_read(redis_url: str, mode: str) -> None:
    small = fresh_settings(redis_url, inbox_max=10)
    with anyio.fail_after(TIMEOUT):
        async with connect(small, mode) as bus:
            for i in range(10):
                await send(bus, "a", "full", f"m{i}")
            before = await cursor_now(bus)
            error = await bus.err(
                "send_message",
                {"agent": "a", "to": "full", "body": "one too many"},
                "inbox_full",
                "full",
                "10",
            )
            assert "nothing was sent" in error["hint"]
            assert await message_events(bus, before) == []
            peeked = await read(bus, "full", peek=True, limit=100)
            assert [m["body"] for m in peeked["messages"]] == [f"m{i}" for i in range(10)]

            # A role message still reaches the agents with room, and says who it missed.
            await bus.ok("heartbeat", {"agent": "full", "capabilities": ["ops"]})
            await bus.ok("heartbeat", {"agent": "roomy", "capabilities": ["ops"]})
            partial = await send(bus, "a", "role:ops", "to all ops")
            assert partial["recipients"] == ["roomy"] and partial["undelivered"] == ["full"]
            assert partial["notices"] == ["Not delivered to full: their inboxes hold 10 unread messages."]
            assert [m["body"] for m in (await read(bus, "roomy"))["messages"]] == ["to all ops"]

            # Reading makes room; read messages are trimmed, never unread ones.
            assert len((await read(bus, "full", limit=3))["messages"]) == 3
            for i in range(3):
                await send(bus, "a", "full", f"late{i}")
            await bus.err("send_message", {"agent": "a", "to": "full", "body": "x"}, "inbox_full", "full")
            rest = await read(bus, "full", limit=100)
            assert [m["body"] for m in rest["messages"]] == [f"m{i}" for i in range(3, 10)] + [
                f"late{i}" for i in range(3)
            ]
            for i in range(10):
                await send(bus, "a", "full", f"again{i}")
            assert (await read(bus, "full", limit=100))["unread_remaining"] == 0


# --- bad input on both tools -----------------------------------------------------------------------

R = "<recipient>"  # an agent with one unread message; placeholders are filled in per test
BIG = "x" * 70_000  # > 64 KiB of JSON

BAD_INPUT = [
    # send_message
    pytest.param("send_message", {}, "invalid_argument", ["to", "body", "required"], id="send-no-args"),
    pytest.param("send_message", {"body": "hi"}, "invalid_argument", ["to", "required"], id="send-no-to"),
    pytest.param("send_message", {"to": R}, "invalid_argument", ["body", "required"], id="send-no-body"),
    pytest.param(
        "send_message", {"to": "role:", "body": "hi"}, "invalid_argument", ["to"], id="send-to-role"
    ),
    pytest.param("send_message", {"to": "a b", "body": "hi"}, "invalid_argument", ["to"], id="send-to-space"),
    pytest.param("send_message", {"to": "", "body": "hi"}, "invalid_argument", ["to"], id="send-to-empty"),
    pytest.param("send_message", {"to": "x" * 65, "body": "hi"}, "invalid_argument", ["to"], id="send-to-65"),
    pytest.param(
        "send_message", {"to": "role:a b", "body": "hi"}, "invalid_argument", ["to"], id="send-to-role-space"
    ),
    pytest.param("send_message", {"to": 7, "body": "hi"}, "invalid_argument", ["to"], id="send-to-number"),
    pytest.param("send_message", {"to": [R], "body": "hi"}, "invalid_argument", ["to"], id="send-to-list"),
    pytest.param("send_message", {"to": R, "body": ""}, "invalid_argument", ["body"], id="send-body-empty"),
    pytest.param(
        "send_message",
        {"to": R, "body": "b" * 16_385},
        "invalid_argument",  # the schema's maxLength refuses it before the core's payload_too_large
        ["body", "16384"],
        id="send-body-16385",
    ),
    pytest.param("send_message", {"to": R, "body": 5}, "invalid_argument", ["body"], id="send-body-number"),
    pytest.param(
        "send_message",
        {"to": R, "body": "hi", "subject": "s" * 201},
        "invalid_argument",
        ["subject", "200"],
        id="send-subject-201",
    ),
    pytest.param(
        "send_message",
        {"to": R, "body": "hi", "thread_id": "bad id"},
        "invalid_argument",
        ["thread_id"],
        id="send-thread-space",
    ),
    pytest.param(
        "send_message",
        {"to": R, "body": "hi", "thread_id": ""},
        "invalid_argument",
        ["thread_id"],
        id="send-thread-empty",
    ),
    pytest.param(
        "send_message",
        {"to": R, "body": "hi", "reply_to": "t-1"},
        "invalid_argument",
        ["reply_to"],
        id="send-reply-to-task-id",
    ),
    pytest.param(
        "send_message",
        {"to": R, "body": "hi", "reply_to": "m-x"},
        "invalid_argument",
        ["reply_to"],
        id="send-reply-to-m-x",
    ),
    pytest.param(
        "send_message",
        {"to": R, "body": "hi", "reply_to": "m-999999"},
        "not_found",
        ["m-999999"],
        id="send-reply-to-unknown",
    ),
    pytest.param(
        "send_message",
        {"to": R, "body": "hi", "data": {"blob": BIG}},
        "payload_too_large",
        ["data", "65,536"],
        id="send-data-too-large",
    ),
    pytest.param(
        "send_message",
        {"to": R, "body": "hi", "idempotency_key": "has space"},
        "invalid_argument",
        ["idempotency_key"],
        id="send-bad-idempotency-key",
    ),
    pytest.param(
        "send_message",
        {"to": R, "body": "hi", "agent": "bad agent"},
        "invalid_argument",
        ["agent"],
        id="send-bad-agent",
    ),
    pytest.param(
        "send_message", {"to": R, "body": "hi", "cc": "x"}, "invalid_argument", ["cc"], id="send-unknown-arg"
    ),
    pytest.param(
        "send_message",
        {"to": "role:nobody", "body": "hi"},
        "not_found",
        ["nobody"],
        id="send-role-nobody",
    ),
    # read_inbox, as the recipient: its one message must stay unread
    pytest.param("read_inbox", {"agent": R, "limit": 0}, "invalid_argument", ["limit"], id="read-limit-0"),
    pytest.param(
        "read_inbox", {"agent": R, "limit": 101}, "invalid_argument", ["limit", "100"], id="read-limit-101"
    ),
    pytest.param(
        "read_inbox", {"agent": R, "limit": "many"}, "invalid_argument", ["limit"], id="read-limit-string"
    ),
    pytest.param(
        "read_inbox", {"agent": R, "limit": 1.5}, "invalid_argument", ["limit"], id="read-limit-1.5"
    ),
    pytest.param(
        "read_inbox",
        {"agent": R, "wait_seconds": -1},
        "invalid_argument",
        ["wait_seconds"],
        id="read-wait-negative",
    ),
    pytest.param(
        "read_inbox",
        {"agent": R, "wait_seconds": "soon"},
        "invalid_argument",
        ["wait_seconds"],
        id="read-wait-string",
    ),
    pytest.param(
        "read_inbox", {"agent": R, "peek": "maybe"}, "invalid_argument", ["peek"], id="read-peek-string"
    ),
    pytest.param("read_inbox", {"agent": R, "peek": 2}, "invalid_argument", ["peek"], id="read-peek-2"),
    pytest.param(
        "read_inbox",
        {"agent": R, "thread_id": "bad id"},
        "invalid_argument",
        ["thread_id"],
        id="read-thread-space",
    ),
    pytest.param("read_inbox", {"agent": "bad agent"}, "invalid_argument", ["agent"], id="read-bad-agent"),
    pytest.param(
        "read_inbox", {"agent": R, "since": "m-1"}, "invalid_argument", ["since"], id="read-unknown-arg"
    ),
]


@pytest.mark.parametrize(("tool", "args", "code", "fragments"), BAD_INPUT)
async def test_bad_input_is_a_clear_tool_error_and_sends_or_reads_nothing(
    inbox_bus: Bus, tool: str, args: dict[str, Any], code: str, fragments: list[str]
) -> None:
    bus = inbox_bus
    recipient = fresh("r")
    with anyio.fail_after(TIMEOUT):
        seed = await send(bus, "tester", recipient, "seed")
        before = await cursor_now(bus)

        await bus.err(tool, fill(args, {R: recipient}), code, *fragments)

        # Nothing was sent (no event, nothing new in the inbox) and nothing was marked read.
        assert await message_events(bus, before) == []
        inbox = await read(bus, recipient, peek=True)
        assert [m["id"] for m in inbox["messages"]] == [seed["message_id"]]
        assert inbox["unread_remaining"] == 1
