"""The event log: the bus's own events, published events, cursors, topic filters and live waits."""

from __future__ import annotations

import anyio
import pytest

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.errors import InvalidArgument, PayloadTooLarge
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio


async def test_every_state_change_of_a_task_is_in_the_log(bus: AgentBus) -> None:
    start = await bus.events.read()
    created = await bus.tasks.create("planner", title="log me")
    claim = await bus.tasks.claim("worker")
    assert claim.lease is not None
    await bus.tasks.complete("worker", created.task_id, claim.lease.lease_token, result=1)
    read = await bus.events.read(after=start.cursor)
    assert [e.topic for e in read.events] == ["task.created", "task.claimed", "task.completed"]
    assert {e.data["task"] for e in read.events} == {created.task_id}
    assert [e.agent for e in read.events] == ["planner", "worker", "worker"]


async def test_reading_without_a_cursor_starts_from_now(bus: AgentBus) -> None:
    await bus.events.publish("a", "old.news")
    now = await bus.events.read()
    assert now.events == []
    await bus.events.publish("a", "new.news", {"n": 1})
    read = await bus.events.read(after=now.cursor)
    assert [(e.topic, e.data) for e in read.events] == [("new.news", {"n": 1})]


async def test_a_cursor_replays_from_the_beginning_and_continues_where_it_stopped(bus: AgentBus) -> None:
    for n in range(5):
        await bus.events.publish("a", "count", n)
    first = await bus.events.read(after="0", limit=3)
    assert [e.data for e in first.events] == [0, 1, 2]
    rest = await bus.events.read(after=first.cursor, limit=10)
    assert [e.data for e in rest.events] == [3, 4]
    again = await bus.events.read(after="0", limit=10)
    assert [e.data for e in again.events] == [0, 1, 2, 3, 4]


async def test_topic_patterns_filter_and_the_cursor_moves_past_skipped_events(bus: AgentBus) -> None:
    await bus.events.publish("a", "build.failed", 1)
    await bus.events.publish("a", "deploy.done", 2)
    await bus.events.publish("a", "build.passed", 3)
    builds = await bus.events.read(after="0", topics=["build.*"])
    assert [e.topic for e in builds.events] == ["build.failed", "build.passed"]
    assert (await bus.events.read(after=builds.cursor)).events == []


async def test_a_waiting_reader_gets_an_event_published_by_another_client(bus: AgentBus) -> None:
    start = await bus.events.read()
    got = []

    async def reader() -> None:
        read = await bus.events.read(after=start.cursor, topics=["deploy.*"], wait_seconds=5)
        got.extend(read.events)

    async with AgentBus.open(bus.settings) as other:
        with anyio.fail_after(3):  # well inside the reader's own 5 s wait
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                await anyio.sleep(0.1)
                await other.events.publish("b", "noise.only")
                await other.events.publish("b", "deploy.done", {"v": 2})
    assert [(e.topic, e.agent, e.data) for e in got] == [("deploy.done", "b", {"v": 2})]


async def test_a_wait_with_nothing_to_read_returns_the_cursor_unchanged(bus: AgentBus) -> None:
    start = await bus.events.read()
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    # 2 s: a 1.2 s wait left 0.2 s after the first progress tick (at 1 s), too little under load
    read = await bus.events.read(after=start.cursor, wait_seconds=2, on_progress=on_progress)
    assert read.events == []
    assert read.cursor == start.cursor
    assert progress, "a wait longer than a second reports progress"


async def test_publish_with_an_idempotency_key_appends_once(bus: AgentBus) -> None:
    first = await bus.events.publish("a", "release.cut", {"v": 1}, idempotency_key="v1")
    again = await bus.events.publish("a", "release.cut", {"v": 1}, idempotency_key="v1")
    assert again.duplicate
    assert again.event_id == first.event_id
    read = await bus.events.read(after="0", topics=["release.*"])
    assert len(read.events) == 1


@pytest.mark.parametrize(
    "topic", ["task.completed", "lock.acquired", "agent.joined", "workflow.x", "message.sent"]
)
async def test_the_bus_topics_cannot_be_spoofed(bus: AgentBus, topic: str) -> None:
    with pytest.raises(InvalidArgument, match="reserved"):
        await bus.events.publish("a", topic)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"after": "yesterday"}, "cursor"),
        ({"topics": ["bad topic"]}, "topic pattern"),
        ({"limit": 0}, "limit"),
        ({"wait_seconds": -1}, "wait_seconds"),
    ],
)
async def test_bad_read_arguments_are_invalid_argument(
    bus: AgentBus, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(InvalidArgument, match=match):
        await bus.events.read(**kwargs)  # type: ignore[arg-type]


async def test_bad_publish_arguments_are_refused(bus: AgentBus) -> None:
    with pytest.raises(InvalidArgument, match="topic"):
        await bus.events.publish("a", "has space")
    with pytest.raises(PayloadTooLarge):
        await bus.events.publish("a", "big.data", "x" * 70_000)
    assert (await bus.events.read(after="0")).events == []


async def test_a_cursor_older_than_the_retention_says_what_was_trimmed(settings: Settings) -> None:
    async with AgentBus.open(settings.model_copy(update={"event_retention": 100})) as bus:
        first = await bus.events.publish("a", "count", 0)
        for n in range(1, 400):
            await bus.events.publish("a", "count", n)
        late = await bus.events.read(after=first.event_id, limit=1)
        oldest = late.events[0]
        assert oldest.data > 1, "the log was trimmed to about the retention"
        assert late.notices == [
            f"Events before {oldest.id} were trimmed by the retention; reading from the oldest kept."
        ]
        kept = await bus.events.read(after=oldest.id, limit=1)
        assert [e.data for e in kept.events] == [oldest.data + 1]
        assert kept.notices == []
        # A cursor that names no event but lies within the log: nothing after it was trimmed.
        before = await bus.events.publish("a", "count", "before")
        await anyio.sleep(0.005)  # the next event gets a later millisecond, so the cursor below is no id
        await bus.events.publish("a", "count", "after")
        ms, seq = before.event_id.split("-")
        between = await bus.events.read(after=f"{ms}-{int(seq) + 1}", limit=1)
        assert [e.data for e in between.events] == ["after"]
        assert between.notices == []
