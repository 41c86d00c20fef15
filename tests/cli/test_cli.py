"""The `agentbus` command: clear, traceback-free refusals before serving, and `--version`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers.commands import MODULE, assert_refused, run

from mcp_agentbus import __version__

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(MODULE, id="python-m"),
        pytest.param([str(BIN / "agentbus")], id="agentbus"),
        pytest.param([str(BIN / "mcp-agentbus")], id="mcp-agentbus"),
    ],
)
def test_version(command: list[str]) -> None:
    proc = run([*command, "--version"])
    assert proc.returncode == 0, proc
    assert __version__ in proc.stdout
    assert "Traceback" not in proc.stderr


def test_help_lists_serve() -> None:
    proc = run([*MODULE, "--help"])
    assert proc.returncode == 0, proc
    assert "serve" in proc.stdout
    serve_help = run([*MODULE, "serve", "--help"])
    assert serve_help.returncode == 0
    assert "--redis-url" in serve_help.stdout and "AGENTBUS_REDIS_URL" in serve_help.stdout


UNREACHABLE = "redis://127.0.0.1:1/0"


@pytest.mark.parametrize("how", ["env", "flag"])
def test_serve_with_unreachable_redis_says_what_to_do(how: str) -> None:
    if how == "env":
        proc = run([*MODULE, "serve"], AGENTBUS_REDIS_URL=UNREACHABLE)
    else:
        proc = run([*MODULE, "serve", "--redis-url", UNREACHABLE])
    err = assert_refused(proc, UNREACHABLE, "cannot reach Redis")
    # what to do about it
    assert "redis-server" in err and "AGENTBUS_REDIS_URL" in err and "memory://" in err
    assert ".)." not in err  # Redis's own sentence ends inside the parentheses, not twice
    assert proc.returncode == 2


def test_unreachable_redis_message_hides_the_password() -> None:
    proc = run([*MODULE, "serve"], AGENTBUS_REDIS_URL="redis://:s3cret-pw@127.0.0.1:1/0")
    err = assert_refused(proc, "127.0.0.1:1", "***")
    assert "s3cret-pw" not in err


def test_unreachable_unix_socket() -> None:
    proc = run([*MODULE, "serve"], AGENTBUS_REDIS_URL="unix:///nonexistent/agentbus-test.sock")
    assert_refused(proc, "/nonexistent/agentbus-test.sock", "cannot reach Redis")


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        pytest.param({"AGENTBUS_LEASE_SECONDS": "0"}, ["lease_seconds", "AGENTBUS_"], id="lease-0"),
        pytest.param({"AGENTBUS_LEASE_SECONDS": "86401"}, ["lease_seconds", "86400"], id="lease-86401"),
        pytest.param(
            {"AGENTBUS_LEASE_SECONDS": "five"}, ["lease_seconds", "integer"], id="lease-not-a-number"
        ),
        pytest.param(
            {"AGENTBUS_TOOLS": "bogus"}, ["AGENTBUS_TOOLS", "bogus", "worker"], id="tools-unknown-profile"
        ),
        pytest.param(
            {"AGENTBUS_TOOLS": "heartbeat,launch_rockets"},
            ["launch_rockets", "claim_task"],
            id="tools-unknown-name",
        ),
        pytest.param({"AGENTBUS_TOOLS": " , "}, ["AGENTBUS_TOOLS"], id="tools-empty-list"),
        pytest.param(
            {"AGENTBUS_REDIS_URL": "http://localhost:6379"}, ["redis_url", "redis://"], id="url-scheme"
        ),
        pytest.param({"AGENTBUS_NAMESPACE": "my swarm"}, ["namespace"], id="namespace"),
        pytest.param({"AGENTBUS_AGENT": "bad agent"}, ["agent"], id="agent"),
        pytest.param({"AGENTBUS_MAX_WAIT_SECONDS": "-1"}, ["max_wait_seconds"], id="max-wait-negative"),
        pytest.param({"AGENTBUS_LOG_LEVEL": "LOUD"}, ["log_level"], id="log-level"),
    ],
)
def test_invalid_settings_are_a_clear_message(env: dict[str, str], fragments: list[str]) -> None:
    # memory:// so that no Redis check runs first: the settings alone must be refused
    proc = run([*MODULE, "serve"], **{"AGENTBUS_REDIS_URL": "memory://", **env})
    err = assert_refused(proc, *fragments)
    assert err.startswith("agentbus: "), err
    assert len(err.strip().splitlines()) <= 4, err  # a message, not a dump


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        pytest.param(["--tools", "bogus"], ["bogus"], id="tools"),
        pytest.param(["--namespace", "a/b"], ["namespace"], id="namespace"),
        pytest.param(["--max-wait", "soon"], ["--max-wait"], id="max-wait-type"),
        pytest.param(["--transport", "carrier-pigeon"], ["--transport"], id="transport"),
    ],
)
def test_invalid_flags_are_a_clear_message(flags: list[str], fragments: list[str]) -> None:
    proc = run([*MODULE, "serve", "--redis-url", "memory://", *flags])
    assert_refused(proc, *fragments)


def test_serve_on_memory_exits_cleanly_at_end_of_input() -> None:
    """With stdin closed at once, a healthy server starts and ends without a word on stdout."""
    proc = run([*MODULE, "serve"], AGENTBUS_REDIS_URL="memory://", AGENTBUS_AGENT="solo")
    assert proc.returncode == 0, proc
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr


def test_token_create_checks_the_role_without_loading_the_mcp_stack(tmp_path: Path) -> None:
    """The profiles live in server/profiles.py, which imports no MCP: a token is made in a blink."""
    tokens = tmp_path / "tokens.json"
    done = run([sys.executable, "-X", "importtime", "-m", "mcp_agentbus", "token", "create", "--agent", "w-*",
                "--role", "worker,create_task", "--tokens-file", str(tokens)])  # fmt: skip
    assert done.returncode == 0, done.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line]
    assert "mcp_agentbus.server.profiles" in imported
    assert not [m for m in imported if m == "mcp" or m.startswith(("mcp.", "rich", "starlette", "uvicorn"))]
    assert tokens.exists() and done.stdout.strip()
