"""Presence and waits as an MCP client sees them: a working agent stays live on one heartbeat, and a
waiting claim returns soon after a message to its agent (issue 15's "how we will judge it")."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from helpers import backend_url, fresh_settings
from helpers.mcp_session import connect

pytestmark = pytest.mark.anyio

BOUND = 20  # seconds: bound on each test's MCP traffic


@pytest.fixture(params=[("redis", "auto"), ("memory", "legacy")], ids=lambda p: "-".join(p))
def backend_and_era(request: pytest.FixtureRequest, real_redis_url: str | None) -> tuple[str, str]:
    backend, mode = request.param
    return backend_url(backend, real_redis_url), mode


async def test_an_agent_that_heartbeats_once_with_ttl_2_s_stays_live_while_it_works(
    backend_and_era: tuple[str, str],
) -> None:
    url, mode = backend_and_era
    settings = fresh_settings(url, max_wait_seconds=20)
    with anyio.fail_after(BOUND):
        async with connect(settings, mode) as worker, connect(settings, mode) as overseer:
            await worker.ok("heartbeat", {"agent": "w1", "ttl_seconds": 2})
            await overseer.ok("create_task", {"title": "five seconds of work"})
            claim = await worker.ok("claim_task", {"agent": "w1", "lease_seconds": 60})
            started = time.monotonic()
            while time.monotonic() - started < 5:  # working: calls, but no other heartbeat
                await worker.ok("read_inbox", {"agent": "w1"})
                agents = (await overseer.ok("list_agents", {}))["agents"]
                assert [(a["agent"], a["alive"]) for a in agents] == [("w1", True)]
                await anyio.sleep(0.5)
            lease = claim["lease"]
            await worker.ok(
                "complete_task",
                {"agent": "w1", "task_id": claim["task"]["id"], "lease_token": lease["lease_token"]},
            )
            events = (await overseer.ok("read_events", {"topics": ["agent.*"], "after": "0"}))["events"]
    assert [e["topic"] for e in events] == ["agent.joined"], "never reported gone while it worked"


async def test_a_claim_waiting_15_s_returns_within_a_second_of_a_message_to_its_agent(
    backend_and_era: tuple[str, str],
) -> None:
    url, mode = backend_and_era
    settings = fresh_settings(url, max_wait_seconds=20)
    got: dict[str, Any] = {}
    async with connect(settings, mode) as worker, connect(settings, mode) as coordinator:
        await worker.ok("heartbeat", {"agent": "w1", "capabilities": ["build"]})

        async def waiting() -> None:
            got["claim"] = await worker.ok("claim_task", {"agent": "w1", "wait_seconds": 15})
            got["at"] = time.monotonic()

        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiting)
                await anyio.sleep(0.5)
                assert not got, "the claim did not wait"
                sent_at = time.monotonic()
                await coordinator.ok(
                    "send_message", {"agent": "boss", "to": "role:build", "body": "work is over"}
                )
    claim = got["claim"]
    assert claim["task"] is None and claim["reason"] == "interrupted"
    assert any("a message arrived for you" in n for n in claim["notices"])
    assert any("unread message" in n for n in claim["notices"]), "the notice names the message"
    assert got["at"] - sent_at < 5, "it returned long before its 15 s"
