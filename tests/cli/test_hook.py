"""`agentbus hook`, as Claude Code runs it: hook JSON on stdin, context for the model on stdout, and
never an error that gets in the agent's way."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio
MODULE = [sys.executable, "-m", "mcp_agentbus"]
TIMEOUT = 30


@pytest.fixture
def redis_url(real_redis_url: str | None) -> str:
    """The hook is another process, so it needs the real server."""
    if real_redis_url is None:
        pytest.skip("redis-server not installed")
    return real_redis_url


def hook(
    settings: Settings | None, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}
    where = [] if settings is None else ["--redis-url", settings.redis_url, "--namespace", settings.namespace]
    return subprocess.run(
        [*MODULE, "hook", *where, *args],
        input=stdin,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def context_of(done: subprocess.CompletedProcess[str], event: str) -> str:
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["hookSpecificOutput"]["hookEventName"] == event
    text: str = out["hookSpecificOutput"]["additionalContext"]
    return text


async def test_it_tells_of_unread_messages_and_leases_and_locks_about_to_lapse(
    bus: AgentBus, settings: Settings
) -> None:
    await bus.inbox.send("boss", "coder", subject="one", body="first")
    await bus.inbox.send("boss", "coder", subject="two", body="second")
    created = await bus.tasks.create("boss", title="Fix the flaky test")
    await bus.tasks.claim("coder", lease_seconds=30)
    await bus.locks.acquire("coder", "file:src/app.py", ttl_seconds=20)

    done = hook(settings, "--agent", "coder", stdin=json.dumps({"hook_event_name": "PostToolUse"}))
    text = context_of(done, "PostToolUse")
    assert text.startswith("agentbus (coder): 2 unread messages: call read_inbox")
    assert re.search(rf"lease on task {created.task_id} \(Fix the flaky test\) expires in (2\d|30) s", text)
    assert re.search(r"lock on file:src/app\.py expires in (1\d|20) s", text), text

    far = hook(settings, "--agent", "coder", "--within", "5", stdin="{}")
    text = context_of(far, "UserPromptSubmit")  # no event named: the prompt hook
    assert "unread" in text and "lease" not in text and "lock" not in text


async def test_it_says_nothing_when_nothing_waits(bus: AgentBus, settings: Settings) -> None:
    await bus.tasks.create("boss", title="far off")
    await bus.tasks.claim("calm", lease_seconds=600)
    done = hook(settings, "--agent", "calm", stdin=json.dumps({"hook_event_name": "UserPromptSubmit"}))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


async def test_other_events_get_plain_text(bus: AgentBus, settings: Settings) -> None:
    await bus.inbox.send("boss", "reader", subject="hi", body="there")
    done = hook(settings, "--agent", "reader", stdin=json.dumps({"hook_event_name": "Notification"}))
    assert done.stdout.strip() == "agentbus (reader): 1 unread message: call read_inbox (agent='reader')."


async def test_the_agent_can_come_from_the_environment(bus: AgentBus, settings: Settings) -> None:
    await bus.inbox.send("boss", "env-agent", subject="hi", body="there")
    done = hook(settings, stdin="not json at all", AGENTBUS_AGENT="env-agent")
    assert "1 unread message" in context_of(done, "UserPromptSubmit")


@pytest.mark.parametrize(
    ("args", "env"),
    [
        pytest.param(["--redis-url", "redis://127.0.0.1:1/0", "--agent", "a"], {}, id="unreachable"),
        pytest.param(["--agent", "a"], {}, id="local-bus-not-running"),
        pytest.param(["--redis-url", "memory://", "--agent", "a"], {}, id="memory"),
        pytest.param([], {}, id="no-agent"),
        pytest.param(["--agent", "not a valid id!"], {}, id="bad-agent"),
    ],
)
def test_it_never_gets_in_the_way(args: list[str], env: dict[str, str]) -> None:
    done = hook(None, *args, stdin=json.dumps({"hook_event_name": "PostToolUse"}), **env)
    assert (done.returncode, done.stdout) == (0, "")
    assert "Traceback" not in done.stderr


def test_it_does_not_load_the_mcp_stack() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mcp_agentbus", "hook", "--agent", "a"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line]
    assert "mcp_agentbus.cli.hook" in imported
    assert not [m for m in imported if m == "mcp" or m.startswith(("mcp.", "rich", "starlette", "uvicorn"))]
