"""A person's look at an agent's inbox (the dashboard): the newest messages, read and unread, without
marking any read."""

from __future__ import annotations

import pytest
from helpers import ALSO_ON_CLUSTER

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.errors import InvalidArgument

pytestmark = [pytest.mark.anyio, ALSO_ON_CLUSTER]


async def test_recent_shows_read_and_unread_messages_newest_first_and_marks_none_read(bus: AgentBus) -> None:
    first = await bus.inbox.send("lead", "worker", "start with the parser", subject="plan")
    await bus.inbox.send("lead", "worker", "then the tests", thread_id=first.thread_id)
    other = await bus.inbox.send("ops", "worker", "deploy at five")
    read = await bus.inbox.read("worker", limit=1)  # the first one is read now
    assert [m.id for m in read.messages] == [first.message_id]

    kept = await bus.inbox.recent("worker")
    assert [k.message.body for k in kept] == ["deploy at five", "then the tests", "start with the parser"]
    assert [k.unread for k in kept] == [True, True, False]
    assert kept[0].message.thread_id == other.thread_id and kept[0].message.sender == "ops"
    assert kept[2].message.subject == "plan" and kept[1].message.thread_id == first.thread_id

    still = await bus.inbox.read("worker")  # the look consumed nothing
    assert [m.body for m in still.messages] == ["then the tests", "deploy at five"]
    assert [k.message.body for k in await bus.inbox.recent("worker", limit=1)] == ["deploy at five"]


async def test_recent_of_an_empty_inbox_is_empty_and_bad_arguments_are_refused(bus: AgentBus) -> None:
    assert await bus.inbox.recent("nobody") == []
    with pytest.raises(InvalidArgument, match="agent id"):
        await bus.inbox.recent("not an id")
    with pytest.raises(InvalidArgument, match="between 1 and 100"):
        await bus.inbox.recent("worker", limit=0)
