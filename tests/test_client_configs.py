"""The files in client_configs/ are what their hosts read, and what they start works.

Each file parses and has its host's shape. Then each is used as its host would use it, against the
session's real Redis: the stdio servers are started from their own command, args and env (expanded
the way Claude Code expands `${VAR}` and `${VAR:-default}`), with the venv's `agentbus` first on PATH
and the host's AGENTBUS_REDIS_URL pointing at the test Redis (the configs leave it unset, which means
the user's local bus, never touched here); the HTTP entries reach a
real `agentbus serve --transport http` with a token made by `agentbus token create`; the hook
commands run under bash; and runner.sh starts a fake `claude` (this module, run as a script) that
does with `--mcp-config` what Claude Code does: starts the server and asks who it is.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import redis
from helpers import free_port
from helpers.examples import BIN, ROOT, stop, wait_until
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.server.tools import TOOLS as ALL_TOOLS
from mcp_agentbus.settings import Settings

CONFIGS = ROOT / "client_configs"
RUNNER = CONFIGS / "runner.sh"
TIMEOUT = 30  # bound on any one process or MCP session here; each takes a second or two
TOOLS = set(ALL_TOOLS)  # what a server with no AGENTBUS_TOOLS lists
NAMESPACE = "my-project"  # the namespace every config ships with
POST_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    },
}


# --- reading the configs as their hosts do -----------------------------------------------------------


def load(name: str) -> dict[str, Any]:
    path = CONFIGS / name
    if path.suffix == ".toml":
        return tomllib.loads(path.read_text())
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def server_entry(name: str) -> dict[str, Any]:
    """The agentbus server entry of a config file."""
    config = load(name)
    entry: dict[str, Any] = config["mcp_servers" if name.endswith(".toml") else "mcpServers"]["agentbus"]
    return entry


VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Claude Code's expansion in .mcp.json: ${VAR}, and ${VAR:-default} when VAR is unset or empty."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if env.get(name):
            return env[name]
        if default is None:
            raise KeyError(f"{name} is not set and {match.group(0)} has no default")
        return default

    return VAR.sub(one, text)


def host_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of the host that starts the servers: no AGENTBUS_* of the user's, the venv's
    `agentbus` first on PATH, the test Redis, no tokens file."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}
    return base | {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AGENTBUS_REDIS_URL": redis_url,
        "AGENTBUS_TOKENS_FILE": "/nonexistent/agentbus/tokens.json",
        **extra,
    }


def server_env(entry: dict[str, Any], host: dict[str, str], *, expands: bool) -> dict[str, str]:
    """What a stdio server is started with: the host's environment plus the entry's env."""
    env = {k: expand(v, host) if expands else v for k, v in entry.get("env", {}).items()}
    return host | env


async def who_am_i(entry: dict[str, Any], env: dict[str, str], log: Path) -> tuple[set[str], str]:
    """Start the entry's stdio server as a host would, list its tools and heartbeat without an agent:
    the tools and the agent id the server acted as."""
    params = StdioServerParameters(command=entry["command"], args=entry.get("args", []), env=env)
    with log.open("w") as errlog, anyio.fail_after(TIMEOUT):
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            beat = await client.call_tool("heartbeat", {"status": "idle"})
    assert beat.is_error is not True, beat.content
    assert beat.structured_content is not None
    return tools, str(beat.structured_content["agent"]["agent"])


def assert_clean_log(log: Path) -> None:
    text = log.read_text()
    assert "Traceback" not in text and "Error executing tool" not in text, text


async def agents_in(redis_url: str, namespace: str) -> set[str]:
    """The live agents of a namespace, read straight from Redis."""
    async with AgentBus.open(Settings(redis_url=redis_url, namespace=namespace), reaper=False) as bus:
        return {agent.agent for agent in (await bus.presence.list_agents()).agents}


@pytest.fixture
def redis_url_real(real_redis_url: str | None) -> Iterator[str]:
    """The session's Redis; afterwards the shipped namespace is emptied again."""
    if real_redis_url is None:
        pytest.skip("redis-server not installed")
    yield real_redis_url
    client = redis.Redis.from_url(real_redis_url)
    try:
        keys = list(client.scan_iter(match=f"ab:{{{NAMESPACE}}}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def fresh(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


# --- shapes --------------------------------------------------------------------------------------


STDIO_CONFIGS = {  # file -> (agent id it ships with, whether its host expands ${VAR})
    "claude_code.mcp.json": ("claude-code", True),
    "claude_desktop_config.json": ("claude-desktop", False),
    "cursor.mcp.json": ("cursor", False),
    "codex.config.toml": ("codex", False),
}


@pytest.mark.parametrize("name", list(STDIO_CONFIGS))
def test_stdio_configs_start_agentbus_serve_with_a_namespace_and_agent_but_no_redis_url(name: str) -> None:
    entry = server_entry(name)
    assert entry["command"] == "agentbus"
    assert entry["args"] == ["serve"]
    assert set(entry["env"]) == {"AGENTBUS_NAMESPACE", "AGENTBUS_AGENT"}  # zero config: the local bus
    agent, expands = STDIO_CONFIGS[name]
    defaults = {k: expand(v, {}) if expands else v for k, v in entry["env"].items()}
    assert defaults == {"AGENTBUS_NAMESPACE": NAMESPACE, "AGENTBUS_AGENT": agent}


def test_claude_code_configs_name_their_transport_and_the_http_one_sends_a_bearer_token() -> None:
    assert server_entry("claude_code.mcp.json")["type"] == "stdio"
    http = server_entry("claude_code_http.mcp.json")
    assert http == {
        "type": "http",
        "url": "http://127.0.0.1:8765/mcp",
        "headers": {"Authorization": "Bearer ${AGENTBUS_TOKEN}"},
    }
    assert expand(http["headers"]["Authorization"], {"AGENTBUS_TOKEN": "abt_x"}) == "Bearer abt_x"


def test_codex_config_gives_long_waits_time_and_offers_the_http_bus_with_a_token_variable() -> None:
    servers = load("codex.config.toml")["mcp_servers"]
    assert set(servers) == {"agentbus", "agentbus_http"}
    stdio = servers["agentbus"]
    assert stdio["tool_timeout_sec"] > 25  # above the server's cap on wait_seconds
    assert stdio["startup_timeout_sec"] >= 10
    assert servers["agentbus_http"] == {
        "url": "http://127.0.0.1:8765/mcp",
        "bearer_token_env_var": "AGENTBUS_TOKEN",
        "tool_timeout_sec": 60,
        "enabled": False,
    }


def hook_commands() -> dict[str, list[dict[str, Any]]]:
    hooks: dict[str, list[dict[str, Any]]] = load("claude_code.settings.json")["hooks"]
    return hooks


def test_settings_hooks_run_agentbus_hook_at_session_start_on_prompts_and_after_edits_quickly() -> None:
    assert set(load("claude_code.settings.json")) == {"hooks"}
    hooks = hook_commands()
    assert set(hooks) == {"SessionStart", "UserPromptSubmit", "PostToolUse"}
    [start], [prompt], [post] = hooks["SessionStart"], hooks["UserPromptSubmit"], hooks["PostToolUse"]
    assert "matcher" not in start and "matcher" not in prompt  # every start source; prompts take none
    matcher = re.compile(post["matcher"])
    for tool in ("Bash", "Edit", "MultiEdit", "Write"):
        assert matcher.fullmatch(tool), tool
    for tool in ("Read", "Grep", "mcp__agentbus__read_inbox"):  # agentbus results carry notices already
        assert not matcher.fullmatch(tool), tool
    for group in (start, prompt, post):
        [hook] = group["hooks"]
        assert set(hook) == {"type", "command", "timeout"}
        assert hook["type"] == "command"
        assert hook["command"].startswith("agentbus hook ")
        assert 1 <= hook["timeout"] <= 10


# --- the stdio configs, started ------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(STDIO_CONFIGS))
async def test_stdio_config_starts_a_server_that_lists_the_tools_and_acts_as_its_agent(
    name: str, redis_url_real: str, tmp_path: Path
) -> None:
    entry = server_entry(name)
    agent, expands = STDIO_CONFIGS[name]
    env = server_env(entry, host_env(redis_url_real), expands=expands)
    tools, acted_as = await who_am_i(entry, env, tmp_path / "server.log")
    assert_clean_log(tmp_path / "server.log")
    assert tools == TOOLS
    assert acted_as == agent
    assert agent in await agents_in(redis_url_real, NAMESPACE)


@pytest.mark.anyio
async def test_claude_code_config_takes_namespace_and_agent_from_the_environment_when_set(
    redis_url_real: str, tmp_path: Path
) -> None:
    entry = server_entry("claude_code.mcp.json")
    namespace = fresh("swarm")
    host = host_env(redis_url_real, AGENTBUS_NAMESPACE=namespace, AGENTBUS_AGENT="worker-7")
    _, acted_as = await who_am_i(entry, server_env(entry, host, expands=True), tmp_path / "server.log")
    assert_clean_log(tmp_path / "server.log")
    assert acted_as == "worker-7"
    assert await agents_in(redis_url_real, namespace) == {"worker-7"}


# --- the HTTP entries, against a real HTTP server with tokens ---------------------------------------


def healthy(port: int) -> bool:
    try:
        return httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx2.TransportError:
        return False


def up_or_exited(proc: subprocess.Popen[bytes], port: int) -> bool:
    return proc.poll() is not None or healthy(port)


@contextmanager
def http_server(env: dict[str, str], log: Path) -> Iterator[int]:
    """`agentbus serve --transport http` on a free loopback port, healthy; its port. Stopped on exit."""
    for _ in range(3):
        port = free_port()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    str(BIN / "agentbus"),
                    "serve",
                    "--transport",
                    "http",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        try:
            wait_until(partial(up_or_exited, proc, port), "the HTTP server", TIMEOUT)
            if proc.poll() is None:
                yield port
                return
            if "address already in use" not in log.read_text().lower():
                pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        finally:
            stop(proc)
    pytest.fail("no free port could be bound in three tries")


def make_token(env: dict[str, str], namespace: str) -> str:
    """`agentbus token create` for agents claude-* in `namespace`: the token, alone on stdout (so
    `export AGENTBUS_TOKEN=$(agentbus token create ...)` works)."""
    made = subprocess.run(
        [
            str(BIN / "agentbus"),
            "token",
            "create",
            "--namespace",
            namespace,
            "--agent",
            "claude-*",
            "--role",
            "all",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert re.fullmatch(r"abt_[A-Za-z0-9_-]+", token), made.stdout
    return token


async def http_session_tools(url: str, headers: dict[str, str], agent: str) -> tuple[set[str], Any]:
    """Tools listed through a session with `headers`, and the result of a heartbeat as `agent`."""
    with anyio.fail_after(TIMEOUT):
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(TIMEOUT)) as http,
            Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
        ):
            tools = {tool.name for tool in (await client.list_tools()).tools}
            return tools, await client.call_tool("heartbeat", {"agent": agent})


@pytest.mark.anyio
async def test_http_configs_reach_a_token_protected_server_with_the_token_from_the_environment(
    redis_url_real: str, tmp_path: Path
) -> None:
    namespace = fresh("http")
    env = host_env(redis_url_real, AGENTBUS_TOKENS_FILE=str(tmp_path / "tokens.json"))
    token = make_token(env, namespace)
    user_env = {"AGENTBUS_TOKEN": token}

    with http_server(env, tmp_path / "server.log") as port:
        claude = server_entry("claude_code_http.mcp.json")
        url = claude["url"].replace(":8765/", f":{port}/")
        headers = {k: expand(v, user_env) for k, v in claude["headers"].items()}
        tools, beat = await http_session_tools(url, headers, "claude-http")
        assert tools == TOOLS
        assert beat.is_error is not True, beat.content
        assert await agents_in(redis_url_real, namespace) == {"claude-http"}  # the token's namespace
        _, intruder = await http_session_tools(url, headers, "someone-else")
        assert intruder.is_error is True
        assert intruder.structured_content["error"]["code"] == "forbidden"

        codex = load("codex.config.toml")["mcp_servers"]["agentbus_http"]
        bearer = {"Authorization": f"Bearer {user_env[codex['bearer_token_env_var']]}"}
        tools, beat = await http_session_tools(
            codex["url"].replace(":8765/", f":{port}/"), bearer, "claude-codex"
        )
        assert tools == TOOLS and beat.is_error is not True, beat.content

        unauthenticated = httpx2.post(url, json=INIT, headers=POST_HEADERS, timeout=TIMEOUT)
        assert unauthenticated.status_code == 401
    assert_clean_log(tmp_path / "server.log")


# --- the hook commands -----------------------------------------------------------------------------


def run_hook(command: str, env: dict[str, str], event: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """A hook command as Claude Code runs it: under bash, the hook's JSON on stdin."""
    return subprocess.run(
        ["bash", "-c", command],
        input=json.dumps(event),
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def all_hook_commands() -> list[tuple[str, str]]:
    return [
        (event, hook["command"])
        for event, groups in hook_commands().items()
        for g in groups
        for hook in g["hooks"]
    ]


def test_hook_commands_pass_the_sessions_namespace_and_agent_or_the_shipped_defaults(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "agentbus"
    fake.parent.mkdir()
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "json.dump({'argv': sys.argv[1:], 'stdin': json.load(sys.stdin)}, open(os.environ['RECORD'], 'w'))\n"
    )
    fake.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}
    base |= {"PATH": f"{fake.parent}{os.pathsep}{os.environ.get('PATH', '')}", "RECORD": str(tmp_path / "r")}
    cases = [
        ({}, NAMESPACE, "claude-code"),
        ({"AGENTBUS_NAMESPACE": "swarm-1", "AGENTBUS_AGENT": "worker-3"}, "swarm-1", "worker-3"),
    ]
    for event, command in all_hook_commands():
        for extra, namespace, agent in cases:
            hook_input = {"hook_event_name": event, "session_id": "s-1", "cwd": str(tmp_path)}
            done = run_hook(command, base | extra, hook_input)
            assert done.returncode == 0, done.stderr
            record = json.loads((tmp_path / "r").read_text())
            argv = ["hook", "--namespace", namespace, "--agent", agent]
            assert record == {"argv": argv, "stdin": hook_input}


def hook_has_landed() -> bool:
    done = subprocess.run(
        [str(BIN / "agentbus"), "hook", "--help"], capture_output=True, timeout=TIMEOUT, check=False
    )
    return done.returncode == 0


@pytest.mark.anyio
async def test_hook_command_tells_the_agent_it_has_unread_messages(
    redis_url_real: str, tmp_path: Path
) -> None:
    if not hook_has_landed():
        pytest.skip("`agentbus hook` is not in this build yet")
    env = host_env(redis_url_real, AGENTBUS_NAMESPACE=fresh("hook"), AGENTBUS_AGENT="hooked")
    entry = server_entry("claude_code.mcp.json")
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=env)
    with (tmp_path / "server.log").open("w") as errlog, anyio.fail_after(TIMEOUT):
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            await client.call_tool("heartbeat", {})
            sent = await client.call_tool(
                "send_message", {"agent": "planner", "to": "hooked", "body": "stop work on auth"}
            )
            assert sent.is_error is not True, sent.content
    for event, command in all_hook_commands():
        hook_input = {"hook_event_name": event, "session_id": "s-1", "cwd": str(tmp_path), "prompt": "go on"}
        done = run_hook(command, env, hook_input)
        assert done.returncode == 0, done.stderr
        output = json.loads(done.stdout)["hookSpecificOutput"]
        assert output["hookEventName"] == event
        assert "message" in output["additionalContext"].lower(), output
        quiet = run_hook(command, env | {"AGENTBUS_AGENT": "nobody-writes-to-me"}, hook_input)
        assert quiet.returncode == 0 and quiet.stdout == "", quiet  # nothing waits: nothing said


@pytest.mark.anyio
async def test_hook_keeps_quiet_inside_a_subagent_about_the_main_sessions_inbox(
    redis_url_real: str, tmp_path: Path
) -> None:
    env = host_env(redis_url_real, AGENTBUS_NAMESPACE=fresh("hook"), AGENTBUS_AGENT="claude-code")
    entry = server_entry("claude_code.mcp.json")
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=env)
    with (tmp_path / "server.log").open("w") as errlog, anyio.fail_after(TIMEOUT):
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            sent = await client.call_tool(
                "send_message", {"agent": "sub-coder-1", "to": "claude-code", "body": "done"}
            )
            assert sent.is_error is not True, sent.content
    [post] = hook_commands()["PostToolUse"]
    hook_input = {
        "hook_event_name": "PostToolUse",
        "session_id": "s-1",
        "cwd": str(tmp_path),
        "tool_name": "Edit",
        "agent_id": "a4d2c8f1e0b3a297",  # Claude Code sets it only inside a subagent
        "agent_type": "general-purpose",
    }
    done = run_hook(post["hooks"][0]["command"], env, hook_input)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", done.stdout


# --- runner.sh ----------------------------------------------------------------------------------------


def fake_claude(argv: list[str]) -> None:
    """A stand-in for `claude -p PROMPT --mcp-config FILE ...`: records how it was started, then, in
    mode `mcp`, starts the agentbus server FILE names (as Claude Code would: its environment plus the
    entry's expanded env) and records the agent id the server acts as. Mode `fail` exits 3 as
    worker-2; mode `hang` waits to be stopped."""
    records, mode = Path(os.environ["FAKE_CLAUDE_RECORDS"]), os.environ["FAKE_CLAUDE_MODE"]
    record: dict[str, Any] = {
        "argv": argv,
        "pid": os.getpid(),
        "agent": os.environ.get("AGENTBUS_AGENT"),
        "namespace": os.environ.get("AGENTBUS_NAMESPACE"),
    }

    def save() -> None:
        partial = records / f"{os.getpid()}.partial"
        partial.write_text(json.dumps(record))
        partial.rename(records / f"{os.getpid()}.json")

    save()
    if mode == "hang":
        time.sleep(TIMEOUT * 4)
    if mode == "fail" and record["agent"] == "worker-2":
        sys.exit(3)
    if mode == "mcp":
        entry = json.loads(Path(argv[argv.index("--mcp-config") + 1]).read_text())["mcpServers"]["agentbus"]
        env = server_env(entry, dict(os.environ), expands=True)
        _, record["acted_as"] = anyio.run(who_am_i, entry, env, records / f"{os.getpid()}.log")
        save()
    print(json.dumps({"type": "result", "result": f"done as {record['agent']}"}))


@pytest.fixture
def fake_claude_bin(tmp_path: Path) -> Path:
    """A directory holding a `claude` that runs fake_claude() from this module."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    claude = bin_dir / "claude"
    claude.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__)}" fake-claude "$@"\n')
    claude.chmod(0o755)
    return bin_dir


def runner_env(fake_bin: Path, tmp_path: Path, mode: str, **extra: str) -> dict[str, str]:
    records = tmp_path / "records"
    records.mkdir(exist_ok=True)
    path = f"{fake_bin}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}
    return base | {
        "PATH": path,
        "AGENTBUS_LOG_DIR": str(tmp_path / "logs"),
        "FAKE_CLAUDE_RECORDS": str(records),
        "FAKE_CLAUDE_MODE": mode,
        **extra,
    }


def records_of(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "records").glob("*.json"))]


def run_runner(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUNNER), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        check=False,
    )


def test_runner_is_an_executable_bash_script_that_parses() -> None:
    assert os.access(RUNNER, os.X_OK)
    assert RUNNER.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in RUNNER.read_text()
    checked = subprocess.run(["bash", "-n", str(RUNNER)], capture_output=True, text=True, timeout=TIMEOUT)
    assert checked.returncode == 0, checked.stderr


def test_runner_starts_n_claude_workers_each_acting_as_its_own_agent_in_one_namespace(
    redis_url_real: str, fake_claude_bin: Path, tmp_path: Path
) -> None:
    namespace = fresh("swarm")
    prompt = tmp_path / "prompt.md"
    prompt.write_text("Claim tasks from agentbus and do them.\n")
    env = runner_env(
        fake_claude_bin, tmp_path, "mcp", AGENTBUS_NAMESPACE=namespace, AGENTBUS_REDIS_URL=redis_url_real
    )
    done = run_runner(["3", str(prompt), "--model", "haiku"], env)
    assert done.returncode == 0, done.stdout + done.stderr

    records = records_of(tmp_path)
    assert sorted(r["agent"] for r in records) == ["worker-1", "worker-2", "worker-3"]
    for record in records:
        agent, argv = record["agent"], record["argv"]
        assert record["namespace"] == namespace
        assert record["acted_as"] == agent  # the config handed the worker's id to its server
        assert argv[0] == "-p"
        assert argv[1] == (
            "Claim tasks from agentbus and do them.\n\n"
            f'Your agentbus agent id is {agent}: pass "agent": "{agent}" on every agentbus call.'
        )
        assert argv[argv.index("--mcp-config") + 1] == str(CONFIGS / "claude_code.mcp.json")
        assert argv[argv.index("--allowedTools") + 1] == "mcp__agentbus__*"
        assert "--strict-mcp-config" in argv
        assert argv[-2:] == ["--model", "haiku"]  # extra flags go to every worker
        result = json.loads((tmp_path / "logs" / f"{agent}.json").read_text())
        assert result["result"] == f"done as {agent}"
        assert f"started {agent} (pid " in done.stdout and f"{agent} finished" in done.stdout
    # The heartbeats of all three landed in the one namespace (their TTL outlives this test).
    assert anyio.run(agents_in, redis_url_real, namespace) == {"worker-1", "worker-2", "worker-3"}


def test_runner_waits_for_every_worker_and_fails_when_one_fails(
    fake_claude_bin: Path, tmp_path: Path
) -> None:
    prompt = tmp_path / "prompt.md"
    prompt.write_text("work\n")
    done = run_runner(["3", str(prompt)], runner_env(fake_claude_bin, tmp_path, "fail"))
    assert done.returncode == 1
    assert "worker-2 exited with status 3" in done.stderr
    assert "worker-1 finished" in done.stdout and "worker-3 finished" in done.stdout
    assert len(records_of(tmp_path)) == 3


def test_runner_stops_its_workers_when_it_is_stopped(fake_claude_bin: Path, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.md"
    prompt.write_text("work\n")
    runner = subprocess.Popen(
        [str(RUNNER), "2", str(prompt)],
        env=runner_env(fake_claude_bin, tmp_path, "hang"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: len(records_of(tmp_path)) == 2, "both fake workers to start", TIMEOUT)
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=TIMEOUT) == 128 + signal.SIGTERM
        for record in records_of(tmp_path):  # the runner waited for them: gone, not even zombies
            with pytest.raises(ProcessLookupError):
                os.kill(record["pid"], 0)
    finally:
        stop(runner)
        for record in records_of(tmp_path):
            with suppress(ProcessLookupError):
                os.kill(record["pid"], signal.SIGKILL)


def test_runner_refuses_bad_usage_with_status_2(fake_claude_bin: Path, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.md"
    prompt.write_text("work\n")
    env = runner_env(fake_claude_bin, tmp_path, "fail")
    for args in ([], ["3"], ["three", str(prompt)], ["0", str(prompt)], ["2", str(tmp_path / "missing.md")]):
        done = run_runner(args, env)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "usage:" in done.stderr or "cannot read the prompt file" in done.stderr, done.stderr
    without_claude = env | {"PATH": "/usr/bin:/bin"}
    if not any(Path(d, "claude").exists() for d in ("/usr/bin", "/bin")):
        done = run_runner(["2", str(prompt)], without_claude)
        assert done.returncode == 2
        assert "claude is not on PATH" in done.stderr
    assert records_of(tmp_path) == []  # no worker was started


if __name__ == "__main__" and sys.argv[1:2] == ["fake-claude"]:
    fake_claude(sys.argv[2:])
