"""`agentbus serve --transport http --json-responses`: each call answered with one JSON body, in both
protocol eras, against a real server process on a real Redis; waits still wait and still end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx2
import pytest
from helpers import while_it_waits
from helpers.http_servers import INIT, POST_HEADERS, Server, bus_env, connect, http_server

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def served(redis_url_real: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = bus_env(redis_url_real, f"json-{uuid.uuid4().hex[:12]}")
    with http_server(env, tmp_path_factory.mktemp("json") / "serve.log", "--json-responses") as server:
        yield server
        server.assert_clean_log()


def test_a_legacy_call_is_answered_with_one_json_body(served: Server) -> None:
    with httpx2.Client(timeout=10) as http:
        opened = http.post(served.mcp, json=INIT, headers=POST_HEADERS)
        assert opened.headers["content-type"].startswith("application/json")
        session = {**POST_HEADERS, "mcp-session-id": opened.headers["mcp-session-id"]}
        http.post(served.mcp, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
        call = {"name": "heartbeat", "arguments": {"agent": "json-1", "note": "plain"}}
        reply = http.post(
            served.mcp,
            json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call},
            headers=session,
        )
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    result = reply.json()["result"]
    assert result["isError"] is False
    assert result["structuredContent"]["agent"]["agent"] == "json-1"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_waiting_claim_still_gets_the_task_created_meanwhile(served: Server, mode: str) -> None:
    capability = f"cap-{uuid.uuid4().hex[:8]}"
    async with connect(served, mode) as worker, connect(served, mode) as coordinator:

        async def create() -> None:
            await coordinator.ok("create_task", {"title": "late", "capability": capability})

        claimed = await while_it_waits(
            lambda: worker.ok(
                "claim_task", {"agent": "json-w", "capabilities": [capability], "wait_seconds": 5}
            ),
            create,
        )
    assert claimed["task"]["title"] == "late"
