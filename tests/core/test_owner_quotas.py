"""Per-owner shares of a namespace's bounds: an owner (a token, or without one the agent a call acts as)
that uses up its share of unfinished tasks, agent records, idle inboxes or held locks is refused with
what to do, and nothing is written, while another owner's agents keep working; what an owner's tasks
finish, agents expire, inboxes wait for and locks hold stops counting against it when it goes. Through
the core API (the owner set as the server sets it per call), and through a real HTTP server where one
bearer token floods and another token's agents work throughout."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import WAIT_BOUND, fresh_settings
from helpers.http_servers import bus_env, http_server
from helpers.mcp_session import Bus, assert_tool_error
from helpers.redis_servers import DATA_ARGS
from helpers.tokens import connect_as

from mcp_agentbus.context import Caller, of_token
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.errors import InvalidArgument
from mcp_agentbus.server.tokens import TokensFile

pytestmark = pytest.mark.anyio

SHARE = 3
# Namespace bounds well above one owner's share, so only the share can refuse.
SETTINGS: dict[str, Any] = {
    "tasks_max": 50,
    "agents_max": 50,
    "idle_inboxes_max": 50,
    "locks_max": 50,
    "tasks_max_per_owner": SHARE,
    "agents_max_per_owner": SHARE,
    "idle_inboxes_max_per_owner": SHARE,
    "locks_max_per_owner": SHARE,
    "retention_seconds": 1,  # gone agents' records, idle inboxes: a second
}
A, B = of_token("tok-a"), of_token("tok-b")


@pytest.fixture
async def bus(redis_url: str) -> AsyncIterator[AgentBus]:
    async with AgentBus.open(fresh_settings(redis_url, **SETTINGS)) as bus:
        yield bus


def key(bus: AgentBus, name: str) -> str:
    return f"{bus.store.keys.prefix}{name}"


def assert_share_refusal(refused: pytest.ExceptionInfo[InvalidArgument], whose: str, setting: str) -> None:
    assert whose in refused.value.message and f"is {SHARE} " in refused.value.message
    assert refused.value.hint is not None
    assert "Other tokens and agents keep their own shares" in refused.value.hint
    assert f"AGENTBUS_{setting}" in refused.value.hint


async def test_an_owner_past_its_task_share_is_refused_while_another_creates_and_a_finished_task_frees_one(
    bus: AgentBus,
) -> None:
    as_a = bus.acting(Caller(owner=A))
    for n in range(SHARE):
        await as_a.tasks.create(f"a-{n}", title=f"a's task {n}")
    with pytest.raises(InvalidArgument) as refused:
        await as_a.tasks.create("a-other", title="one too many")
    assert_share_refusal(refused, "your token's share", "TASKS_MAX_PER_OWNER")
    with pytest.raises(InvalidArgument):
        await as_a.workflows.create("a-0", title="w", tasks=[{"key": "k", "title": "k"}])
    assert int(await bus.redis.hget(key(bus, "counters"), "open") or 0) == SHARE, "nothing was written"
    as_b = bus.acting(Caller(owner=B))
    assert (await as_b.tasks.create("b-0", title="b's task")).state == "ready"
    await as_b.workflows.create("b-0", title="b's workflow", tasks=[{"key": "k", "title": "k"}])
    claim = await bus.tasks.claim("worker", task_id="t-1")  # a's first task, done by anyone
    assert claim.lease is not None
    await bus.tasks.complete("worker", "t-1", claim.lease.lease_token)
    await as_a.tasks.create("a-0", title="fits again")
    with pytest.raises(InvalidArgument):
        await as_a.tasks.create("a-0", title="and no more")


async def test_without_a_token_each_agent_has_its_own_task_share(bus: AgentBus) -> None:
    for n in range(SHARE):
        await bus.tasks.create("runaway", title=f"t{n}")
    with pytest.raises(InvalidArgument) as refused:
        await bus.tasks.create("runaway", title="one too many")
    assert_share_refusal(refused, "agent runaway's share", "TASKS_MAX_PER_OWNER")
    assert (await bus.tasks.create("careful", title="mine")).state == "ready"


async def test_an_owner_past_its_agent_share_is_refused_while_another_joins_and_gone_agents_free_it(
    bus: AgentBus,
) -> None:
    as_a = bus.acting(Caller(owner=A))
    for n in range(SHARE):
        await as_a.presence.heartbeat(f"a-{n}", ttl_seconds=0.2)
    with pytest.raises(InvalidArgument) as refused:
        await as_a.presence.heartbeat("a-new")
    assert_share_refusal(refused, "your token's share", "AGENTS_MAX_PER_OWNER")
    assert not await bus.redis.exists(key(bus, "agent:a-new")), "nothing is written on a refusal"
    await as_a.presence.heartbeat("a-0", ttl_seconds=0.2)  # its own agents keep heartbeating
    as_b = bus.acting(Caller(owner=B))
    assert (await as_b.presence.heartbeat("b-0")).joined
    with anyio.fail_after(WAIT_BOUND):
        while True:  # until the reaper marks a's agents gone and their records' retention passes
            try:
                await as_a.presence.heartbeat("a-new")
                break
            except InvalidArgument:
                await anyio.sleep(0.1)


async def test_an_agent_that_comes_back_under_another_owner_stays_charged_to_the_first(bus: AgentBus) -> None:
    as_a = bus.acting(Caller(owner=A))
    await as_a.presence.heartbeat("shared")
    as_b = bus.acting(Caller(owner=B))
    await as_b.presence.heartbeat("shared")
    for n in range(SHARE):
        await as_b.presence.heartbeat(f"b-{n}")
    owned = await bus.redis.zrange(bus.store.keys.owned("agents", A), 0, -1)
    assert owned == ["shared"]


async def test_an_owner_past_its_idle_inbox_share_is_refused_while_another_messages_an_absent_agent(
    bus: AgentBus,
) -> None:
    as_a = bus.acting(Caller(owner=A))
    for n in range(SHARE):
        await as_a.inbox.send("a-0", f"ghost-{n}", "anyone?")
    with pytest.raises(InvalidArgument) as refused:
        await as_a.inbox.send("a-0", "ghost-new", "anyone?")
    assert_share_refusal(refused, "your token's share", "IDLE_INBOXES_MAX_PER_OWNER")
    assert "list_agents" in (refused.value.hint or "")
    assert not await bus.redis.exists(key(bus, "inbox:ghost-new")), "nothing is written on a refusal"
    await as_a.inbox.send("a-0", "ghost-0", "an inbox that waits already takes more")
    as_b = bus.acting(Caller(owner=B))
    assert (await as_b.inbox.send("b-0", "later", "read this when you come")).recipients == ["later"]
    await bus.presence.heartbeat("ghost-1")  # a recipient that comes live no longer uses a's share
    await as_a.inbox.send("a-0", "ghost-new", "now it fits")


async def test_an_owners_idle_inboxes_stop_counting_when_they_expire(bus: AgentBus) -> None:
    as_a = bus.acting(Caller(owner=A))
    for n in range(SHARE):
        await as_a.inbox.send("a-0", f"ghost-{n}", "anyone?")
    with anyio.fail_after(WAIT_BOUND):
        while True:  # the retention is a second
            try:
                await as_a.inbox.send("a-0", "ghost-new", "anyone?")
                break
            except InvalidArgument:
                await anyio.sleep(0.1)


async def test_an_owner_past_its_lock_share_is_refused_while_another_locks_and_a_release_frees_one(
    bus: AgentBus,
) -> None:
    tokens = []
    as_a = bus.acting(Caller(owner=A))
    for n in range(SHARE):  # several of a's agents together
        got = await as_a.locks.acquire(f"a-{n}", f"src/{n}.py")
        tokens.append(got.lock_token)
    with pytest.raises(InvalidArgument) as refused:
        await as_a.locks.acquire("a-new", "src/new.py")
    assert_share_refusal(refused, "your token's share", "LOCKS_MAX_PER_OWNER")
    assert not await bus.redis.exists(key(bus, "lock:src/new.py")), "nothing is written on a refusal"
    assert (await as_a.locks.acquire("a-0", "src/0.py")).extended, "a held lock is still extended"
    as_b = bus.acting(Caller(owner=B))
    assert (await as_b.locks.acquire("b-0", "src/new.py")).acquired
    assert tokens[0] is not None
    await bus.locks.release("a-0", "src/0.py", tokens[0])
    assert (await as_a.locks.acquire("a-new", "docs/x.md")).acquired


async def test_an_owners_expired_locks_stop_counting(bus: AgentBus) -> None:
    as_a = bus.acting(Caller(owner=A))
    for n in range(SHARE):
        await as_a.locks.acquire(f"a-{n}", f"src/{n}.py", ttl_seconds=0.2)
    with anyio.fail_after(WAIT_BOUND):
        while True:
            try:
                await as_a.locks.acquire("a-new", "src/new.py")
                break
            except InvalidArgument:
                await anyio.sleep(0.1)


# --- over HTTP: one token floods past its shares, another token's agents work throughout -------------

HTTP_SHARE = 5
HTTP_SETTINGS = {
    "AGENTBUS_TASKS_MAX": "100",
    "AGENTBUS_IDLE_INBOXES_MAX": "100",
    "AGENTBUS_LOCKS_MAX": "100",
    "AGENTBUS_AGENTS_MAX": "100",
    "AGENTBUS_TASKS_MAX_PER_OWNER": str(HTTP_SHARE),
    "AGENTBUS_IDLE_INBOXES_MAX_PER_OWNER": str(HTTP_SHARE),
    "AGENTBUS_LOCKS_MAX_PER_OWNER": str(HTTP_SHARE),
    "AGENTBUS_AGENTS_MAX_PER_OWNER": str(HTTP_SHARE),
}


async def refused_calls(bus: Bus, tool: str, calls: list[dict[str, Any]]) -> int:
    """Make the calls; how many were refused (each with a share refusal, never a traceback)."""
    refused = 0
    for args in calls:
        result = await bus.call(tool, args)
        if result.is_error:
            error = assert_tool_error(result, "invalid_argument")
            assert "your token's share" in error["message"], error
            refused += 1
    return refused


async def team_works(team: Bus, n: int) -> None:
    """Another token's agents: join, create, claim, complete, message an absent agent, lock."""
    await team.ok("heartbeat", {"agent": f"team-{n}", "ttl_seconds": 3_600})
    await team.ok("create_task", {"agent": "team-0", "title": f"team task {n}", "capability": "team"})
    claim = await team.ok("claim_task", {"agent": "team-1", "capabilities": ["team"]})
    assert claim["task"] is not None, claim
    await team.ok(
        "complete_task",
        {"agent": "team-1", "task_id": claim["task"]["id"], "lease_token": claim["lease"]["lease_token"]},
    )
    sent = await team.ok("send_message", {"agent": "team-0", "to": f"team-absent-{n}", "body": "later"})
    assert sent["recipients"] == [f"team-absent-{n}"]
    lock = await team.ok("acquire_lock", {"agent": "team-0", "resource": f"team/{n}.py"})
    await team.ok(
        "release_lock", {"agent": "team-0", "resource": f"team/{n}.py", "lock_token": lock["lock_token"]}
    )


async def test_one_token_flooding_past_its_shares_leaves_another_tokens_agents_working(
    own_redis: Callable[..., str], tmp_path: Path
) -> None:
    url, namespace = own_redis(*DATA_ARGS), f"owners-{uuid.uuid4().hex[:8]}"
    tokens = TokensFile(tmp_path / "tokens.json")
    flood_token, _ = tokens.create(namespace=namespace, agent="flood-*", role="all")
    team_token, _ = tokens.create(namespace=namespace, agent="team-*", role="all")
    env = {**bus_env(url, namespace), **HTTP_SETTINGS, "AGENTBUS_TOKENS_FILE": str(tokens.path)}
    flood = 2 * HTTP_SHARE
    with http_server(env, tmp_path / "server.log") as server:
        with anyio.fail_after(60):
            async with (
                connect_as(server, "auto", team_token) as team,
                connect_as(server, "auto", flood_token) as flooder,
            ):
                await team_works(team, 0)
                await team_works(team, 1)
                refused = {
                    "create_task": await refused_calls(
                        flooder, "create_task", [{"agent": f"flood-{n}", "title": "t"} for n in range(flood)]
                    ),
                    "send_message": await refused_calls(
                        flooder,
                        "send_message",
                        [{"agent": "flood-0", "to": f"ghost-{n}", "body": "g"} for n in range(flood)],
                    ),
                    "heartbeat": await refused_calls(
                        flooder, "heartbeat", [{"agent": f"flood-{n}"} for n in range(flood)]
                    ),
                    "acquire_lock": await refused_calls(
                        flooder,
                        "acquire_lock",
                        [{"agent": f"flood-{n}", "resource": f"flood/{n}"} for n in range(flood)],
                    ),
                }
                assert refused == {tool: flood - HTTP_SHARE for tool in refused}, refused
                for n in range(2, 4):
                    await team_works(team, n)
        server.assert_clean_log()
