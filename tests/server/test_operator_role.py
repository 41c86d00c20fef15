"""The token role ``operator``: a person's, for the web dashboard (view and act there), which calls no
agent tools on ``/mcp`` and reads no resources there, and says so; made by ``agentbus token create
--role operator``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from helpers.commands import MODULE, assert_refused, run
from helpers.http_servers import Server, bus_env, fresh, http_server
from helpers.subscriptions import ROOT
from helpers.tokens import assert_resource_refused, connect_as
from mcp.shared.exceptions import MCPError

from mcp_agentbus.server.tokens import TokensFile

pytestmark = pytest.mark.anyio

TIMEOUT = 30


@pytest.fixture
def guarded(redis_url_real: str, tmp_path: Path) -> Iterator[tuple[Server, TokensFile]]:
    tokens = TokensFile(tmp_path / "tokens.json")
    tokens.create(namespace=fresh("other"), agent="someone", role="all")  # tokens are required from start
    env = {**bus_env(redis_url_real, fresh("ops")), "AGENTBUS_TOKENS_FILE": str(tokens.path)}
    with http_server(env, tmp_path / "server.log") as running:
        yield running, tokens
        running.assert_clean_log()


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_an_operator_token_lists_no_tools_and_is_told_it_is_a_dashboard_token(
    guarded: tuple[Server, TokensFile], mode: str
) -> None:
    server, tokens = guarded
    namespace = fresh("ops")
    operator, _ = tokens.create(namespace=namespace, agent="alice", role="operator")
    worker, _ = tokens.create(namespace=namespace, agent="w-*", role="worker")
    with anyio.fail_after(TIMEOUT):
        async with connect_as(server, mode, operator) as ops:
            assert (await ops.client.list_tools()).tools == []
            for tool, args in (
                ("claim_task", {"agent": "alice"}),
                ("send_message", {"to": "w-1", "body": "x"}),
            ):
                error = await ops.err(tool, args, "forbidden", "role 'operator'", "dashboard token", tool)
                assert "agentbus token create --role worker" in error["hint"], error
                assert "in a browser" in error["hint"], error
            with pytest.raises(MCPError) as caught:
                await ops.client.read_resource(f"{ROOT}locks")
            assert_resource_refused(caught.value, f"{ROOT}locks", "forbidden", "dashboard token")
        async with connect_as(server, mode, worker) as w:  # the other roles are refused as before
            error = await w.err("create_task", {"title": "t", "agent": "w-1"}, "forbidden", "role 'worker'")
            assert "It may call: heartbeat, claim_task" in error["hint"], error


def test_token_create_makes_an_operator_token_acting_as_human_unless_it_names_an_agent(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens.json"
    made = run(
        [*MODULE, "token", "create", "--role", "operator", "--namespace", "proj", "--tokens-file", str(path)]
    )
    assert made.returncode == 0, made.stderr
    named = run(
        [*MODULE, "token", "create", "--role", "operator", "--agent", "alice", "--tokens-file", str(path)]
    )
    assert named.returncode == 0, named.stderr
    grants = json.loads(path.read_text())["tokens"]
    assert [(g["agent"], g["role"]) for g in grants] == [("human", "operator"), ("alice", "operator")]

    mixed = run(
        [*MODULE, "token", "create", "--role", "operator,worker", "--agent", "a", "--tokens-file", str(path)]
    )
    assert_refused(mixed, "--role", "operator is a person's dashboard role and stands alone")
    nobody = run([*MODULE, "token", "create", "--role", "worker", "--tokens-file", str(path)])
    assert_refused(nobody, "--agent is required")
    assert len(json.loads(path.read_text())["tokens"]) == 2, "the refused ones made nothing"

    helped = run([sys.executable, "-m", "mcp_agentbus", "token", "create", "--help"])
    assert helped.returncode == 0
    text = " ".join(helped.stdout.split())
    assert "operator: a person's token for the web dashboard" in text, text
    assert "call no agent tools" in text, text
