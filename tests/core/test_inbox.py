"""Inboxes through the core API: direct, role and broadcast sends, read-once reads, threads, waits,
durability, bounds (inbox_max) and a read cut off by cancellation handing its messages back."""

from __future__ import annotations

from collections import Counter
from contextlib import AsyncExitStack
from typing import Any, cast

import anyio
import pytest
from helpers import ALSO_ON_CLUSTER, WAIT_BOUND, fresh_settings, ms_of, redis_ms, until_redis_time

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import EventView, SendResult
from mcp_agentbus.errors import InboxFull, InvalidArgument, NotFound, PayloadTooLarge
from mcp_agentbus.ids import MAX_BODY, MAX_JSON_BYTES

pytestmark = [pytest.mark.anyio, ALSO_ON_CLUSTER]


def inbox_key(bus: AgentBus, agent: str, family: str = "inbox") -> str:
    return f"ab:{{{bus.settings.namespace}}}:{family}:{agent}"


async def events_of(bus: AgentBus, topic: str) -> list[EventView]:
    read = await bus.events.read(after="0", topics=[topic], limit=500)
    return read.events


async def read_all(bus: AgentBus, agent: str, **kwargs: Any) -> list[str]:
    """Read `agent`'s inbox until it is empty; the ids, in the order returned."""
    ids: list[str] = []
    while True:
        got = await bus.inbox.read(agent, **kwargs)
        if not got.messages:
            return ids
        ids += [m.id for m in got.messages]


# --- direct send and read ----------------------------------------------------------------------------


async def test_a_direct_message_round_trips_every_field(bus: AgentBus) -> None:
    await bus.presence.heartbeat("bob")
    data = {"files": ["a.py", "b.py"], "n": 3, "ok": True, "none": None, "text": "héllo ✓"}
    before = await redis_ms(bus)
    sent = await bus.inbox.send("alice", "bob", "please review", subject="review", data=data)
    after = await redis_ms(bus)

    assert sent.message_id.startswith("m-")
    assert sent.thread_id == sent.message_id, "a new conversation is its own thread"
    assert sent.recipients == ["bob"]
    assert sent.undelivered == [] and sent.duplicate is False
    assert sent.notices == [], "bob is alive: nothing to say"

    got = await bus.inbox.read("bob")
    assert len(got.messages) == 1 and got.unread_remaining == 0
    m = got.messages[0]
    assert m.id == sent.message_id
    assert m.sender == "alice" and m.to == "bob"
    assert m.subject == "review" and m.body == "please review"
    assert m.data == data
    assert m.thread_id == sent.thread_id and m.reply_to is None
    assert int(before) - 1 <= ms_of(m.sent_at) <= after + 1
    assert m.model_dump()["from"] == "alice", "the sender is published as 'from'"


async def test_a_message_without_subject_or_data_reads_back_empty(bus: AgentBus) -> None:
    await bus.inbox.send("alice", "bob", "just text")
    (m,) = (await bus.inbox.read("bob")).messages
    assert (m.subject, m.body, m.data, m.reply_to) == ("", "just text", None, None)


async def test_a_direct_send_to_an_absent_agent_still_delivers_with_a_notice(bus: AgentBus) -> None:
    sent = await bus.inbox.send("alice", "nobody-yet", "for later")
    assert sent.recipients == ["nobody-yet"]
    assert len(sent.notices) == 1 and "nobody-yet is not alive" in sent.notices[0]
    assert "waits in its inbox" in sent.notices[0]
    got = await bus.inbox.read("nobody-yet")
    assert [m.body for m in got.messages] == ["for later"]


async def test_reads_are_oldest_first_bounded_by_limit_and_count_the_rest(bus: AgentBus) -> None:
    sent = [(await bus.inbox.send("alice", "bob", f"msg {n}")).message_id for n in range(7)]
    first = await bus.inbox.read("bob", limit=3)
    assert [m.id for m in first.messages] == sent[:3]
    assert first.unread_remaining == 4
    second = await bus.inbox.read("bob", limit=3)
    assert [m.id for m in second.messages] == sent[3:6]
    assert second.unread_remaining == 1
    last = await bus.inbox.read("bob", limit=3)
    assert [m.id for m in last.messages] == sent[6:]
    assert last.unread_remaining == 0


async def test_a_read_marks_read_and_a_peek_does_not(bus: AgentBus) -> None:
    a = await bus.inbox.send("alice", "bob", "one")
    b = await bus.inbox.send("carol", "bob", "two")

    peeked = await bus.inbox.read("bob", peek=True)
    assert [m.id for m in peeked.messages] == [a.message_id, b.message_id]
    assert peeked.unread_remaining == 2, "a peek leaves them unread"
    again = await bus.inbox.read("bob", peek=True, limit=1)
    assert [m.id for m in again.messages] == [a.message_id]

    read = await bus.inbox.read("bob")
    assert [m.id for m in read.messages] == [a.message_id, b.message_id]
    assert read.unread_remaining == 0
    assert (await bus.inbox.read("bob")).messages == [], "each message is read once"
    assert (await bus.inbox.read("bob", peek=True)).messages == []


async def test_each_inbox_is_its_own(bus: AgentBus) -> None:
    await bus.inbox.send("alice", "bob", "for bob")
    await bus.inbox.send("alice", "carol", "for carol")
    assert [m.body for m in (await bus.inbox.read("carol")).messages] == ["for carol"]
    assert [m.body for m in (await bus.inbox.read("bob")).messages] == ["for bob"]
    assert (await bus.inbox.read("alice")).messages == []


# --- threads and replies -----------------------------------------------------------------------------


async def test_a_thread_filter_reads_only_that_thread_and_leaves_the_rest_unread(bus: AgentBus) -> None:
    a1 = await bus.inbox.send("alice", "bob", "a1", thread_id="design")
    other = await bus.inbox.send("carol", "bob", "c1")
    a2 = await bus.inbox.send("alice", "bob", "a2", thread_id="design")
    assert a1.thread_id == a2.thread_id == "design"

    design = await bus.inbox.read("bob", thread_id="design")
    assert [m.id for m in design.messages] == [a1.message_id, a2.message_id]
    assert {m.thread_id for m in design.messages} == {"design"}
    assert design.unread_remaining == 1, "the other thread's message is still unread"
    assert (await bus.inbox.read("bob", thread_id="design")).messages == []

    rest = await bus.inbox.read("bob")
    assert [m.id for m in rest.messages] == [other.message_id]
    assert rest.messages[0].thread_id == other.message_id


async def test_a_thread_filter_respects_the_limit(bus: AgentBus) -> None:
    ids = []
    for n in range(5):
        await bus.inbox.send("carol", "bob", f"noise {n}")
        ids.append((await bus.inbox.send("alice", "bob", f"t {n}", thread_id="t")).message_id)
    got = await bus.inbox.read("bob", thread_id="t", limit=2)
    assert [m.id for m in got.messages] == ids[:2]
    assert got.unread_remaining == 8
    assert await read_all(bus, "bob", thread_id="t") == ids[2:]


async def test_a_reply_joins_the_thread_of_the_message_it_answers(bus: AgentBus) -> None:
    question = await bus.inbox.send("alice", "bob", "what time?", thread_id="sched")
    (received,) = (await bus.inbox.read("bob")).messages
    answer = await bus.inbox.send("bob", "alice", "noon", reply_to=received.id)
    assert answer.thread_id == "sched"
    (got,) = (await bus.inbox.read("alice")).messages
    assert got.reply_to == question.message_id and got.thread_id == "sched"

    # a reply to a message that started its own thread lands in that thread
    fresh = await bus.inbox.send("alice", "bob", "new topic")
    reply = await bus.inbox.send("bob", "alice", "ok", reply_to=fresh.message_id)
    assert reply.thread_id == fresh.message_id

    # an explicit thread_id wins over reply_to's
    moved = await bus.inbox.send("bob", "alice", "elsewhere", reply_to=fresh.message_id, thread_id="side")
    assert moved.thread_id == "side"
    (m,) = (await bus.inbox.read("alice", thread_id="side")).messages
    assert m.reply_to == fresh.message_id


async def test_a_reply_to_names_a_message_of_the_repliers_own_inbox(bus: AgentBus) -> None:
    question = await bus.inbox.send("alice", "bob", "what time?", thread_id="sched")
    for outsider in ("alice", "carol"):  # its sender, and an agent it never reached
        with pytest.raises(NotFound, match=f"not in the inbox of {outsider}") as refused:
            await bus.inbox.send(outsider, "bob", "me too", reply_to=question.message_id)
        assert "thread_id" in refused.value.hint
    before_reading = await bus.inbox.send("bob", "alice", "noon?", reply_to=question.message_id)
    await bus.inbox.read("bob")
    after_reading = await bus.inbox.send("bob", "alice", "noon.", reply_to=question.message_id)
    assert before_reading.thread_id == after_reading.thread_id == "sched"
    padded = "m-" + question.message_id.removeprefix("m-").zfill(6)  # the same number, not its id
    with pytest.raises(NotFound, match=padded):
        await bus.inbox.send("bob", "alice", "noon!", reply_to=padded)
    assert len(await events_of(bus, "message.sent")) == 3, "a refused reply sends nothing"

    # a message to a role is in the inbox of each agent it reached
    for agent in ("lead", "rev-1", "rev-2"):
        await bus.presence.heartbeat(agent, capabilities=["review"])
    call = await bus.inbox.send("lead", "role:review", "who takes PR 7?", thread_id="pr-7")
    for reviewer in ("rev-1", "rev-2"):
        answer = await bus.inbox.send(reviewer, "lead", "me", reply_to=call.message_id)
        assert answer.thread_id == "pr-7"


async def test_a_reply_to_an_unknown_message_is_not_found_and_sends_nothing(bus: AgentBus) -> None:
    await bus.inbox.send("alice", "bob", "before")
    with pytest.raises(NotFound, match="m-999"):
        await bus.inbox.send("alice", "bob", "orphan", reply_to="m-999")
    assert len(await events_of(bus, "message.sent")) == 1
    got = await bus.inbox.read("bob")
    assert [m.body for m in got.messages] == ["before"]


# --- fan-out -----------------------------------------------------------------------------------------


async def test_a_role_message_reaches_every_live_agent_with_the_capability_but_the_sender(
    bus: AgentBus,
) -> None:
    await bus.presence.heartbeat("rev-1", capabilities=["review", "python"])
    await bus.presence.heartbeat("rev-2", capabilities=["review"])
    await bus.presence.heartbeat("coder", capabilities=["python"])
    await bus.presence.heartbeat("me", capabilities=["review"])
    await bus.presence.heartbeat("faded", capabilities=["review"], ttl_seconds=0.05)
    faded_until = await redis_ms(bus) + 50
    await until_redis_time(bus, faded_until + 5)

    sent = await bus.inbox.send("me", "role:review", "PR #7 is ready", subject="review")
    assert sorted(sent.recipients) == ["rev-1", "rev-2"]
    assert sent.undelivered == [] and sent.notices == []
    for agent in ("rev-1", "rev-2"):
        (m,) = (await bus.inbox.read(agent)).messages
        assert (m.id, m.to, m.sender, m.body) == (sent.message_id, "role:review", "me", "PR #7 is ready")
        assert m.thread_id == sent.thread_id
    for agent in ("coder", "me", "faded"):
        assert (await bus.inbox.read(agent)).messages == [], agent


async def test_a_broadcast_reaches_every_live_agent_but_the_sender(bus: AgentBus) -> None:
    for agent in ("a", "b", "c"):
        await bus.presence.heartbeat(agent)
    await bus.presence.heartbeat("faded", ttl_seconds=0.05)
    await until_redis_time(bus, await redis_ms(bus) + 60)

    sent = await bus.inbox.send("a", "*", "standup in 5")
    assert sorted(sent.recipients) == ["b", "c"]
    for agent in ("b", "c"):
        (m,) = (await bus.inbox.read(agent)).messages
        assert (m.id, m.to) == (sent.message_id, "*")
    assert (await bus.inbox.read("a")).messages == []
    assert (await bus.inbox.read("faded")).messages == []
    (event,) = await events_of(bus, "message.sent")
    assert sorted(event.data["recipients"]) == ["b", "c"]


async def test_fan_out_with_nobody_to_reach_is_not_found_and_sends_nothing(bus: AgentBus) -> None:
    await bus.presence.heartbeat("me", capabilities=["review"])
    await bus.presence.heartbeat("coder", capabilities=["python"])
    with pytest.raises(NotFound, match="review"):
        await bus.inbox.send("me", "role:review", "anyone?")
    with pytest.raises(NotFound, match="deploy"):
        await bus.inbox.send("me", "role:deploy", "anyone?")
    assert await events_of(bus, "message.sent") == []
    assert (await bus.inbox.read("coder")).messages == []


async def test_a_broadcast_with_only_the_sender_alive_is_not_found(bus: AgentBus) -> None:
    await bus.presence.heartbeat("me")
    with pytest.raises(NotFound):
        await bus.inbox.send("me", "*", "hello?")
    assert await events_of(bus, "message.sent") == []


# --- idempotency -------------------------------------------------------------------------------------


async def test_a_repeated_idempotency_key_returns_the_first_message_and_delivers_once(bus: AgentBus) -> None:
    first = await bus.inbox.send("alice", "bob", "once", idempotency_key="k-1")
    again = await bus.inbox.send("alice", "bob", "once", idempotency_key="k-1")
    assert first.duplicate is False and again.duplicate is True
    assert (again.message_id, again.thread_id, again.recipients) == (
        first.message_id,
        first.thread_id,
        first.recipients,
    )
    got = await bus.inbox.read("bob")
    assert [m.id for m in got.messages] == [first.message_id]
    assert len(await events_of(bus, "message.sent")) == 1

    other = await bus.inbox.send("alice", "bob", "twice", idempotency_key="k-2")
    assert other.message_id != first.message_id and not other.duplicate
    # the key is the sender's: another sender with the same key sends its own message
    theirs = await bus.inbox.send("carol", "bob", "mine", idempotency_key="k-1")
    assert theirs.message_id != first.message_id and not theirs.duplicate


async def test_concurrent_sends_with_one_idempotency_key_deliver_once(bus: AgentBus) -> None:
    results: list[SendResult] = []

    async def send(via: AgentBus) -> None:
        results.append(await via.inbox.send("alice", "bob", "once", idempotency_key="race"))

    async with AgentBus.open(bus.settings, reaper=False) as other:
        with anyio.fail_after(WAIT_BOUND):
            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(send, (bus, other)[i % 2])
    assert len({r.message_id for r in results}) == 1
    assert sorted(r.duplicate for r in results) == [False] + [True] * 5
    assert len((await bus.inbox.read("bob")).messages) == 1


# --- durability and exactly-once ---------------------------------------------------------------------


async def test_messages_and_their_read_state_survive_reopening_the_bus(redis_url: str) -> None:
    settings = fresh_settings(redis_url)
    async with AgentBus.open(settings) as bus:
        read_before = await bus.inbox.send("alice", "bob", "read before", subject="s1", data={"n": 1})
        kept = await bus.inbox.send("alice", "bob", "kept", subject="s2", data=[1, 2])
        (m,) = (await bus.inbox.read("bob", limit=1)).messages
        assert m.id == read_before.message_id

    async with AgentBus.open(settings) as bus:
        got = await bus.inbox.read("bob")
        assert [m.id for m in got.messages] == [kept.message_id]
        (m,) = got.messages
        assert (m.sender, m.subject, m.body, m.data) == ("alice", "s2", "kept", [1, 2])
        assert got.unread_remaining == 0
        # replies still find their thread after the restart
        reply = await bus.inbox.send("bob", "alice", "thanks", reply_to=read_before.message_id)
        assert reply.thread_id == read_before.thread_id


async def test_concurrent_readers_get_every_message_exactly_once(redis_url: str) -> None:
    settings = fresh_settings(redis_url)
    async with AsyncExitStack() as stack:
        buses = [await stack.enter_async_context(AgentBus.open(settings, reaper=False)) for _ in range(5)]
        sent = [(await buses[0].inbox.send("alice", "bob", f"n{n}")).message_id for n in range(200)]
        got: list[list[str]] = []

        async def reader(bus: AgentBus) -> None:
            mine = await read_all(bus, "bob", limit=7)
            got.append(mine)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(10):
                    tg.start_soon(reader, buses[i % len(buses)])

    everything = [m for mine in got for m in mine]
    counts = Counter(everything)
    assert sorted(counts) == sorted(sent)
    assert set(counts.values()) == {1}, [m for m, c in counts.items() if c > 1]
    for mine in got:  # each reader saw its share in send order
        assert mine == sorted(mine, key=lambda m: int(m[2:]))


# --- waits -------------------------------------------------------------------------------------------


async def test_a_waiting_reader_is_woken_by_a_send_from_another_process(bus: AgentBus) -> None:
    got: list[str] = []

    async def reader() -> None:
        read = await bus.inbox.read("bob", wait_seconds=5)
        got.extend(m.body for m in read.messages)

    async with AgentBus.open(bus.settings) as other:
        started = anyio.current_time()
        with anyio.fail_after(3):  # well inside the reader's own 5 s wait
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                await anyio.sleep(0.1)
                await other.inbox.send("carol", "not-bob", "noise")
                await other.inbox.send("alice", "bob", "wake up")
        assert anyio.current_time() - started < 3
    assert got == ["wake up"]


async def test_a_wait_returns_at_once_when_a_message_is_already_there(bus: AgentBus) -> None:
    await bus.inbox.send("alice", "bob", "ready")
    with anyio.fail_after(2):
        got = await bus.inbox.read("bob", wait_seconds=5)
    assert [m.body for m in got.messages] == ["ready"]


async def test_a_wait_over_the_server_cap_is_cut_to_the_cap_with_a_notice(redis_url: str) -> None:
    async with AgentBus.open(fresh_settings(redis_url, max_wait_seconds=0.3)) as bus:
        with anyio.fail_after(WAIT_BOUND):
            got = await bus.inbox.read("bob", wait_seconds=30)
    assert got.messages == [] and got.unread_remaining == 0
    assert len(got.notices) == 1
    assert "wait_seconds=30" in got.notices[0] and "0.3" in got.notices[0]


async def test_a_wait_within_the_cap_has_no_notice_and_reports_progress(bus: AgentBus) -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    with anyio.fail_after(WAIT_BOUND):
        got = await bus.inbox.read("bob", wait_seconds=1.5, on_progress=on_progress)
    assert got.messages == [] and got.notices == []
    assert progress, "a wait longer than a second reports progress"
    for done, total, message in progress:
        assert total == 1.5 and 0 <= done <= 1.5
        assert message is not None and "waiting for a message" in message


# --- cancellation -----------------------------------------------------------------------------------


async def test_a_read_cancelled_during_its_script_hands_the_messages_back(bus: AgentBus) -> None:
    sent = [(await bus.inbox.send("alice", "bob", f"n{n}")).message_id for n in range(3)]
    with anyio.CancelScope() as scope:
        scope.cancel()  # cancelled before the script returns: it runs shielded, then is undone
        await bus.inbox.read("bob", limit=2)
    assert scope.cancelled_caught

    got = await bus.inbox.read("bob")
    assert [m.id for m in got.messages] == sent, "the handed-back messages are unread, in order"
    (unread,) = await events_of(bus, "message.unread")
    assert unread.agent == "bob"
    assert unread.data == {"agent": "bob", "messages": sent[:2]}


async def test_read_once_cancelled_marks_its_messages_unread_again(bus: AgentBus) -> None:
    sent = [(await bus.inbox.send("alice", "bob", f"n{n}")).message_id for n in range(2)]
    with anyio.CancelScope() as scope:
        scope.cancel()
        await bus.inbox._read_once("bob", 20, False, "")
    assert scope.cancelled_caught
    assert [m.id for m in (await bus.inbox.read("bob", peek=True)).messages] == sent
    assert len(await events_of(bus, "message.unread")) == 1
    assert await bus.redis.zcard(inbox_key(bus, "bob", "read")) == 0, "unread again, not read too"


async def test_a_cancelled_peek_hands_nothing_back(bus: AgentBus) -> None:
    await bus.inbox.send("alice", "bob", "look")
    with anyio.CancelScope() as scope:
        scope.cancel()
        await bus.inbox.read("bob", peek=True)
    assert scope.cancelled_caught
    assert await events_of(bus, "message.unread") == []
    assert [m.body for m in (await bus.inbox.read("bob")).messages] == ["look"]


async def test_a_read_cancelled_while_waiting_takes_nothing(bus: AgentBus) -> None:
    with anyio.move_on_after(0.3):
        await bus.inbox.read("bob", wait_seconds=5)
    sent = await bus.inbox.send("alice", "bob", "later")
    got = await bus.inbox.read("bob")
    assert [m.id for m in got.messages] == [sent.message_id]
    assert await events_of(bus, "message.unread") == []


# --- bounds ------------------------------------------------------------------------------------------


async def test_a_full_inbox_refuses_a_direct_send_and_keeps_what_it_holds(redis_url: str) -> None:
    async with AgentBus.open(fresh_settings(redis_url, inbox_max=10)) as bus:
        sent = [(await bus.inbox.send("alice", "bob", f"n{n}")).message_id for n in range(10)]
        with pytest.raises(InboxFull) as refused:
            await bus.inbox.send("alice", "bob", "one too many")
        assert refused.value.code == "inbox_full"
        assert "bob" in refused.value.message and "10" in refused.value.message
        assert await bus.redis.xlen(inbox_key(bus, "bob")) == 10
        assert len(await events_of(bus, "message.sent")) == 10
        assert (await bus.presence.heartbeat("bob")).unread_messages == 10

        # reading one makes room for exactly one more
        assert [m.id for m in (await bus.inbox.read("bob", limit=1)).messages] == sent[:1]
        room = await bus.inbox.send("alice", "bob", "fits now")
        with pytest.raises(InboxFull):
            await bus.inbox.send("alice", "bob", "full again")
        assert await read_all(bus, "bob") == [*sent[1:], room.message_id]


async def test_a_reply_to_a_message_the_inbox_no_longer_keeps_is_not_found(redis_url: str) -> None:
    async with AgentBus.open(fresh_settings(redis_url, inbox_max=10)) as bus:
        await bus.presence.heartbeat("bob")
        first = await bus.inbox.send("alice", "bob", "first", thread_id="old")
        for n in range(10):  # read messages make room: the first is trimmed by the tenth send
            await bus.inbox.read("bob")
            await bus.inbox.send("alice", "bob", f"n{n}")
        with pytest.raises(NotFound, match=f"{first.message_id} is not in the inbox of bob"):
            await bus.inbox.send("bob", "alice", "late", reply_to=first.message_id)
        # what finds a message for a reply leaves with it: nothing per message outlives the inbox
        assert await bus.redis.xlen(inbox_key(bus, "bob")) == 10
        assert await bus.redis.zcard(inbox_key(bus, "bob", "read")) == 9
        assert await bus.redis.zcard(inbox_key(bus, "bob", "unread")) == 1
        prefix = bus.store.keys.prefix
        names = {k.removeprefix(prefix) async for k in bus.redis.scan_iter(match=f"{prefix}*", count=1000)}
        assert {n for n in names if ":" in n and not n.startswith(("agent:", "owned_"))} == {
            "inbox:bob",
            "unread:bob",
            "read:bob",
        }


async def test_fan_out_skips_a_full_inbox_and_says_so(redis_url: str) -> None:
    async with AgentBus.open(fresh_settings(redis_url, inbox_max=10)) as bus:
        for agent in ("me", "busy", "free"):
            await bus.presence.heartbeat(agent, capabilities=["ops"])
        for n in range(10):
            await bus.inbox.send("x", "busy", f"n{n}")

        sent = await bus.inbox.send("me", "role:ops", "deploy at 5")
        assert sent.recipients == ["free"]
        assert sent.undelivered == ["busy"]
        assert len(sent.notices) == 1
        assert "Not delivered to busy" in sent.notices[0] and "10 unread" in sent.notices[0]
        assert [m.id for m in (await bus.inbox.read("free")).messages] == [sent.message_id]
        assert await bus.redis.xlen(inbox_key(bus, "busy")) == 10
        (event,) = [e for e in await events_of(bus, "message.sent") if e.agent == "me"]
        assert event.data["recipients"] == ["free"] and event.data["undelivered"] == ["busy"]

        # when every recipient is full, nothing is sent at all
        for n in range(10):
            await bus.inbox.send("x", "free", f"f{n}")
        with pytest.raises(InboxFull):
            await bus.inbox.send("me", "*", "anyone?")


async def test_read_messages_are_trimmed_oldest_first_and_unread_ones_never(redis_url: str) -> None:
    async with AgentBus.open(fresh_settings(redis_url, inbox_max=10)) as bus:
        key = inbox_key(bus, "bob")
        sent: list[str] = []
        read: list[str] = []
        for n in range(10):
            sent.append((await bus.inbox.send("alice", "bob", f"first {n}")).message_id)
        read += await read_all(bus, "bob")
        assert await bus.redis.xlen(key) == 10, "read messages are kept up to inbox_max"

        for n in range(25):
            sent.append((await bus.inbox.send("alice", "bob", f"more {n}")).message_id)
            assert await bus.redis.xlen(key) <= 10
            if n % 4 == 3:  # fall behind: unread messages pile up between reads
                read += [m.id for m in (await bus.inbox.read("bob", limit=3)).messages]
        unread = await bus.redis.zcard(f"ab:{{{bus.settings.namespace}}}:unread:bob")
        assert unread > 3, "the test must leave several messages unread"
        assert await bus.redis.xlen(key) == 10

        read += await read_all(bus, "bob")
        assert read == sent, "every message read exactly once, in order, none trimmed unread"
        # what is left in the stream are the newest ten
        entries = cast(list[tuple[str, dict[str, str]]], await bus.redis.xrange(key))
        assert [fields["id"] for _, fields in entries] == sent[-10:]


# --- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"to": "role:"}, InvalidArgument, "recipient"),
        ({"to": "a b"}, InvalidArgument, "recipient"),
        ({"to": "role:has space"}, InvalidArgument, "recipient"),
        ({"to": "**"}, InvalidArgument, "recipient"),
        ({"to": ""}, InvalidArgument, "recipient"),
        ({"agent": "bad agent"}, InvalidArgument, "agent id"),
        ({"body": ""}, InvalidArgument, "body is empty"),
        ({"body": " \n\t"}, InvalidArgument, "body is empty"),
        ({"body": "x" * (MAX_BODY + 1)}, PayloadTooLarge, "body"),
        ({"subject": "s" * 201}, InvalidArgument, "subject"),
        ({"data": "x" * MAX_JSON_BYTES}, PayloadTooLarge, "data"),
        ({"thread_id": "has space"}, InvalidArgument, "thread_id"),
        ({"thread_id": ""}, InvalidArgument, "thread_id"),
        ({"reply_to": "7"}, InvalidArgument, "reply_to"),
        ({"reply_to": "m-x"}, InvalidArgument, "reply_to"),
        ({"idempotency_key": "with space"}, InvalidArgument, "idempotency_key"),
    ],
)
async def test_bad_send_arguments_are_refused_before_anything_is_sent(
    bus: AgentBus, kwargs: dict[str, Any], error: type[InvalidArgument], match: str
) -> None:
    call: dict[str, Any] = {"agent": "alice", "to": "bob", "body": "hi"} | kwargs
    with pytest.raises(error, match=match) as refused:
        await bus.inbox.send(call.pop("agent"), call.pop("to"), call.pop("body"), **call)
    assert type(refused.value) is error
    assert await events_of(bus, "message.sent") == []
    assert (await bus.inbox.read("bob")).messages == []


async def test_a_body_at_the_limit_is_accepted(bus: AgentBus) -> None:
    await bus.inbox.send("alice", "bob", "x" * MAX_BODY)
    (m,) = (await bus.inbox.read("bob")).messages
    assert len(m.body) == MAX_BODY


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"thread_id": "bad thread"}, "thread_id"),
        ({"wait_seconds": -1}, "wait_seconds"),
        ({"wait_seconds": float("nan")}, "wait_seconds"),
        ({"agent": "role:x"}, "agent id"),
    ],
)
async def test_bad_read_arguments_are_invalid_argument(
    bus: AgentBus, kwargs: dict[str, Any], match: str
) -> None:
    await bus.inbox.send("alice", "bob", "stays unread")
    call: dict[str, Any] = {"agent": "bob"} | kwargs
    with pytest.raises(InvalidArgument, match=match):
        await bus.inbox.read(call.pop("agent"), **call)
    assert (await bus.inbox.read("bob", peek=True)).unread_remaining == 1


# --- events ------------------------------------------------------------------------------------------


async def test_sends_and_reads_are_in_the_event_log(bus: AgentBus) -> None:
    a = await bus.inbox.send("alice", "bob", "one", subject="hello", thread_id="t1")
    b = await bus.inbox.send("alice", "bob", "two")
    await bus.inbox.read("bob", peek=True)  # a peek writes no event
    await bus.inbox.read("bob")

    sent = await events_of(bus, "message.sent")
    assert [(e.agent, e.data["message"]) for e in sent] == [("alice", a.message_id), ("alice", b.message_id)]
    assert sent[0].data["thread"] == "t1" and sent[0].data["to"] == "bob"
    assert sent[0].data["subject"] == "hello" and sent[0].data["recipients"] == ["bob"]
    assert "undelivered" not in sent[0].data

    (read,) = await events_of(bus, "message.read")
    assert read.agent == "bob"
    assert read.data == {"agent": "bob", "messages": [a.message_id, b.message_id]}
