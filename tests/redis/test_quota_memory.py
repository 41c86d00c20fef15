"""A namespace's Redis memory has a ceiling: with small bounds configured, a private redis-server is
flooded every way one agent can (events, inboxes of ids nobody uses, fan-out to fake agents, tasks,
locks, a stream of messages read as they come), and the namespace stays under the ceiling the bounds
give, and holds there when the flood goes on, while another agent keeps working: through the core
API, and through a real HTTP server process where the flood comes with one bearer token and the
working agents with another.

`ceiling` is the formula of docs/limits.md: the sum over every bounded thing of its bound times the
most one item of it can take, plus a fixed overhead, times the allocator's rounding."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import fresh_settings
from helpers.http_servers import bus_env, http_server
from helpers.mcp_session import Bus, assert_tool_error
from helpers.redis_servers import DATA_ARGS
from helpers.tokens import connect_as

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.errors import InboxFull, InvalidArgument
from mcp_agentbus.ids import MAX_JSON_BYTES
from mcp_agentbus.redis.connection import Redis, close, connect
from mcp_agentbus.redis.keys import Keys
from mcp_agentbus.server.tokens import TokensFile
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio

BOUNDS: dict[str, Any] = {
    "event_retention": 100,
    "event_log_max_bytes": 262_144,
    "tasks_max": 40,
    "agents_max": 20,
    "inbox_max": 10,
    "inbox_max_bytes": 65_536,
    "idle_inboxes_max": 20,
    "fanout_max_bytes": 65_536,
    "locks_max": 40,
    "state_keys_max": 20,
}

# The most one item takes in Redis, by what the tools accept (limits.py) and what a script keeps.
ALLOCATOR = 1.25  # jemalloc rounds an allocation up to its size class: at most a quarter more
EVENT_ENTRY = 64  # a stream entry's own overhead beyond its topic, agent and data
MAX_EVENT = MAX_JSON_BYTES + 200  # one event's data, topic and agent
INBOX_KEYS = 1_500  # an inbox's three keys, its inbox_bytes field, idle index entry and owner's charge
TASK = 140_000  # title 200 and description 16,384 characters (4 bytes each at most), payload 64 KiB, fields
AGENT = 2_700 + 50 * 600  # presence record (status, note, 20 capabilities, owner's entry), lost-list of 50
LOCK = 12_500  # a 512-character resource (up to 2 KB) in its hash key, three indexes and its owner's
STATE_KEY = 12_000  # a 512-character key (up to 2 KB) in its record, two indexes, its owner's and a tombstone
NAMESPACE = 65_536  # counters, reaper key, event marks


def ceiling(s: Settings) -> float:
    """The most Redis memory the namespace of `s` can take (bounded keys only; see docs/limits.md for
    the finished tasks and idempotency records that retention bounds by time)."""
    events = s.event_log_max_bytes * 65 / 64 + MAX_EVENT + (s.event_retention + 100) * EVENT_ENTRY
    inboxes = (s.agents_max + s.idle_inboxes_max) * (s.inbox_max_bytes + INBOX_KEYS)
    items = s.tasks_max * TASK + s.agents_max * AGENT + s.locks_max * LOCK
    items += s.state_keys_max * (s.state_value_max_bytes + STATE_KEY)
    return ALLOCATOR * (events + inboxes + items) + NAMESPACE


async def namespace_bytes(redis: Redis, namespace: str) -> int:
    """MEMORY USAGE (every element) of every key of the namespace."""
    total = 0
    async for key in redis.scan_iter(match=f"{Keys(namespace).prefix}*", count=1_000):
        total += await redis.memory_usage(key, samples=0) or 0
    return total


async def used_memory(bus: AgentBus) -> int:
    info = await bus.redis.info("memory")
    return int(info["used_memory"])


async def accepted(call: Awaitable[object]) -> bool:
    """Whether the call went through (False: refused past a bound)."""
    try:
        await call
    except (InvalidArgument, InboxFull):
        return False
    return True


async def flood(bus: AgentBus, round_: int) -> None:
    """Everything one agent can pile up, each past its bound (bounded: some 600 calls)."""
    s = bus.settings
    for n in range(4 * s.event_log_max_bytes // 60_000):
        await bus.events.publish("flooder", "flood.big", {"n": n, "blob": "e" * 60_000})
    caps = [f"c{i}" for i in range(20)]
    agents = [
        await accepted(bus.presence.heartbeat(f"fake-{n}", note="n" * 500, capabilities=caps))
        for n in range(s.agents_max + 5)
    ]
    ghosts = [
        await accepted(bus.inbox.send("flooder", f"ghost-{round_}-{n}", "g" * 15_000))
        for n in range(s.idle_inboxes_max + 10)
        for _ in range(5)
    ]
    body = "f" * (s.fanout_max_bytes // s.agents_max - 400)
    broadcasts = [await accepted(bus.inbox.send("flooder", "*", body)) for _ in range(2 * s.inbox_max)]
    payload = {"p": "p" * 60_000}
    tasks = [
        await accepted(bus.tasks.create("flooder", title="t", description="d" * 16_000, payload=payload))
        for _ in range(s.tasks_max + 10)
    ]
    locks = [
        await accepted(bus.locks.acquire("flooder", f"{round_}/{n}/" + "r" * 500, ttl_seconds=3_600))
        for n in range(s.locks_max + 10)
    ]
    states = [  # every other key expires at once, and the next writes clear it as a deletion (a tombstone)
        await accepted(
            bus.state.set(
                "flooder",
                f"{round_}/{n}/" + "s" * 500,
                value="v" * 60_000,
                ttl_seconds=0.05 if n % 2 else None,
            )
        )
        for n in range(2 * s.state_keys_max + 10)
    ]
    for flooded in (agents, ghosts, broadcasts, tasks, locks, states):
        assert not all(flooded), "a flood never reached its bound"
    for n in range(10 * s.inbox_max):  # the worker reads its inbox as it goes, as workers do
        await bus.inbox.read("worker", limit=100)
        await bus.inbox.send("flooder", "worker", f"m{n}")


async def still_working(bus: AgentBus) -> None:
    """The other agent's calls, after a flood."""
    assert (await bus.presence.heartbeat("worker", status="busy")).agent.status == "busy"
    await bus.inbox.read("peer", limit=100)  # what the flood's broadcasts left it
    assert (await bus.inbox.send("worker", "peer", "on it")).recipients == ["peer"]
    assert [m.body for m in (await bus.inbox.read("peer")).messages] == ["on it"]
    assert (await bus.events.publish("worker", "build.done", {"ok": True})).event_id


async def test_a_namespace_flooded_every_way_stays_under_its_ceiling_and_holds_there(
    own_redis: Callable[..., str],
) -> None:
    settings = fresh_settings(own_redis(*DATA_ARGS), **BOUNDS)
    limit = ceiling(settings)
    async with AgentBus.open(settings) as bus:
        await bus.presence.heartbeat("worker", ttl_seconds=3_600)
        await bus.presence.heartbeat("peer", ttl_seconds=3_600)
        before = await used_memory(bus)
        sizes = []
        for round_ in range(2):
            await flood(bus, round_)
            await still_working(bus)
            sizes.append(
                (await namespace_bytes(bus.redis, settings.namespace), await used_memory(bus) - before)
            )
        (first, _), (second, second_used) = sizes
        assert first <= limit, f"{first:,} bytes after a flood; the ceiling is {limit:,.0f}"
        assert second <= limit, f"{second:,} bytes after a second flood; the ceiling is {limit:,.0f}"
        assert second <= 1.1 * first, f"the namespace grew from {first:,} to {second:,} bytes"
        assert second_used <= limit, f"INFO used_memory grew {second_used:,} bytes; ceiling {limit:,.0f}"


# --- over HTTP: one token floods, another token's agents keep working ------------------------------


def server_env(redis_url: str, namespace: str, tokens: Path) -> dict[str, str]:
    bounds = {f"AGENTBUS_{name.upper()}": str(value) for name, value in BOUNDS.items()}
    return {**bus_env(redis_url, namespace), **bounds, "AGENTBUS_TOKENS_FILE": str(tokens)}


async def http_flood(flooder: Bus, s: Settings) -> Counter[str]:
    """The flood through the tools, as flood-* agents; the codes of its refusals."""
    refused: Counter[str] = Counter()

    async def call(tool: str, args: dict[str, Any]) -> None:
        result = await flooder.call(tool, args)
        if result.is_error:
            assert_tool_error(result, "invalid_argument")  # with a message and a hint, never a traceback
            refused[tool] += 1

    for n in range(s.agents_max):
        await call("heartbeat", {"agent": f"flood-{n}", "ttl_seconds": 3_600})
    for n in range(s.idle_inboxes_max + 5):
        await call("send_message", {"agent": "flood-0", "to": f"ghost-{n}", "body": "g" * 10_000})
    await call("send_message", {"agent": "flood-0", "to": "*", "body": "f" * 16_000})
    for n in range(s.tasks_max + 5):
        await call("create_task", {"agent": "flood-0", "title": f"t{n}", "payload": {"p": "p" * 60_000}})
    for _ in range(8):
        await call(
            "publish_event", {"agent": "flood-0", "topic": "flood.big", "data": {"blob": "e" * 60_000}}
        )
    return refused


async def test_one_token_flooding_stays_under_the_ceiling_while_another_tokens_agents_keep_working(
    own_redis: Callable[..., str], tmp_path: Path
) -> None:
    url, namespace = own_redis(*DATA_ARGS), f"quota-{uuid.uuid4().hex[:8]}"
    tokens = TokensFile(tmp_path / "tokens.json")
    flood_token, _ = tokens.create(namespace=namespace, agent="flood-*", role="all")
    team_token, _ = tokens.create(namespace=namespace, agent="team-*", role="worker,publish_event")
    settings = Settings(redis_url=url, namespace=namespace, **BOUNDS)
    with http_server(server_env(url, namespace, tokens.path), tmp_path / "server.log") as server:
        with anyio.fail_after(60):
            async with (
                connect_as(server, "auto", team_token) as team,
                connect_as(server, "auto", flood_token) as flooder,
            ):
                for agent in ("team-a", "team-b"):
                    await team.ok("heartbeat", {"agent": agent, "ttl_seconds": 3_600})
                refused = await http_flood(flooder, settings)
                assert {"heartbeat", "send_message", "create_task"} <= set(refused), refused
                await team.ok("heartbeat", {"agent": "team-a", "status": "busy"})
                await team.ok("read_inbox", {"agent": "team-b", "limit": 100})  # the flood's broadcast
                await team.ok("send_message", {"agent": "team-a", "to": "team-b", "body": "on it"})
                got = await team.ok("read_inbox", {"agent": "team-b"})
                assert [m["body"] for m in got["messages"]] == ["on it"]
                claim = await team.ok("claim_task", {"agent": "team-b"})
                lease = claim["lease"]["lease_token"]
                await team.ok(
                    "complete_task", {"agent": "team-b", "task_id": claim["task"]["id"], "lease_token": lease}
                )
                await team.ok(
                    "publish_event", {"agent": "team-a", "topic": "build.done", "data": {"ok": True}}
                )
        server.assert_clean_log()
    redis = connect(url)
    try:
        used = await namespace_bytes(redis, namespace)
    finally:
        await close(redis)
    assert used <= ceiling(settings), f"{used:,} bytes; the ceiling is {ceiling(settings):,.0f}"
