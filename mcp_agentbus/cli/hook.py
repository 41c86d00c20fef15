"""`agentbus hook`: a Claude Code hook that tells the agent what waits for it on the bus: unread
messages, and leases or locks about to lapse.

It runs before every prompt or after every tool call, so it must be quick: it reads a handful of keys,
never imports the MCP stack, gives Redis one short timeout, and never starts the local bus. When there
is nothing to say, or it cannot look, it prints nothing and exits 0: a hook must never get in the
agent's way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import anyio

from mcp_agentbus.redis.connection import close, connect
from mcp_agentbus.redis.keys import Keys

TIMEOUT = 1.5
# Events whose JSON output can add context for the model (others get plain text on stdout).
CONTEXT_EVENTS = {"UserPromptSubmit", "PostToolUse", "SessionStart"}


@dataclass
class Waiting:
    unread: int = 0
    leases: list[tuple[str, str, float]] = field(default_factory=list)  # (task id, title, seconds left)
    locks: list[tuple[str, float]] = field(default_factory=list)  # (resource, seconds left)


async def look(redis_url: str, namespace: str, agent: str) -> Waiting:
    """What waits for `agent`: its unread count, and the time left on each lease and lock it holds."""
    keys = Keys(namespace)
    redis = connect(redis_url)
    try:
        with anyio.fail_after(TIMEOUT):
            seconds, micros = await redis.time()
            now = seconds + micros / 1e6
            async with redis.pipeline(transaction=False) as pipe:
                pipe.zcard(keys.unread(agent))
                pipe.smembers(keys.held(agent))
                pipe.smembers(keys.agent_locks(agent))
                unread, held, locked = await pipe.execute()
            held, locked = sorted(held), sorted(locked)
            async with redis.pipeline(transaction=False) as pipe:
                for task_id in held:
                    pipe.hmget(keys.task(task_id), "title", "lease_exp")
                for resource in locked:
                    pipe.zscore(keys.locks, resource)
                replies = await pipe.execute()
    finally:
        await close(redis)
    tasks, expiries = replies[: len(held)], replies[len(held) :]
    return Waiting(
        unread=unread,
        leases=[
            (t, title or "", int(exp) / 1000 - now)
            for t, (title, exp) in zip(held, tasks, strict=True)
            if exp
        ],
        locks=[(r, exp / 1000 - now) for r, exp in zip(locked, expiries, strict=True) if exp is not None],
    )


def tell(agent: str, waiting: Waiting, within: float) -> str | None:
    """What to tell the agent, or None when nothing needs its attention within `within` seconds."""
    notes = []
    if waiting.unread:
        plural = "s" if waiting.unread > 1 else ""
        notes.append(f"{waiting.unread} unread message{plural}: call read_inbox (agent={agent!r}).")
    for task_id, title, left in waiting.leases:
        if left <= within:
            notes.append(
                f"Your lease on task {task_id} ({title}) expires in {max(left, 0):.0f} s: call heartbeat to "
                "extend it, or complete_task / fail_task."
            )
    for resource, left in waiting.locks:
        if left <= within:
            notes.append(
                f"Your lock on {resource} expires in {max(left, 0):.0f} s: call heartbeat to extend it, or "
                "release_lock when done."
            )
    if not notes:
        return None
    return f"agentbus ({agent}): " + " ".join(notes)


def output(event: str, text: str) -> str:
    """The hook's stdout for `event`: JSON that adds context for the model where the event allows it."""
    if event in CONTEXT_EVENTS:
        return json.dumps({"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}})
    return text


@dataclass(frozen=True)
class HookInput:
    event: str
    in_subagent: bool  # Claude Code names an agent_id only for hooks that fire inside a subagent


def parse_input(stdin: str) -> HookInput:
    """The hook input Claude Code sends as JSON on stdin; a prompt hook if it names no event."""
    try:
        data = json.loads(stdin) if stdin.strip() else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    event = data.get("hook_event_name")
    return HookInput(event if isinstance(event, str) else "UserPromptSubmit", bool(data.get("agent_id")))
