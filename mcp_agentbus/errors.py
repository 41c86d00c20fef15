"""The errors agentbus reports. Each carries a stable ``code``, a message and a hint on what to do.

    AgentBusError
     ├── InvalidArgument        invalid_argument
     │    └── PayloadTooLarge   payload_too_large
     ├── UnknownAgent           unknown_agent
     ├── NotFound               not_found
     ├── WrongState             wrong_state
     ├── LeaseLost              lease_lost
     ├── NotLockOwner           not_lock_owner
     ├── InboxFull              inbox_full
     ├── Forbidden              forbidden
     ├── BackendUnavailable     backend_unavailable
     └── InternalError          internal

At the MCP edge each becomes a tool error whose structured content is
``{"error": {"code", "message", "hint"}}``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ValidationError


class AgentBusError(Exception):
    code: ClassVar[str] = "internal"
    default_hint: ClassVar[str] = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


class InvalidArgument(AgentBusError):
    code = "invalid_argument"
    default_hint = (
        "Fix the argument named in the message and call again: the message names the expected format, "
        "the tool's input schema the bounds."
    )


MAX_PROBLEMS = 10  # of one refusal's validation problems named, so that a flood of bad names stays short


def explain_validation(exc: ValidationError) -> str:
    """One readable problem per field, e.g. ``lease_seconds: Input should be ≤ 86400 (got 100000)``; past
    `MAX_PROBLEMS`, how many more there are."""
    errors = exc.errors(include_url=False)
    problems = []
    for err in errors[:MAX_PROBLEMS]:
        where = clip(".".join(str(part) for part in err["loc"]) or "arguments")
        got = err.get("input")
        shown = "" if err["type"] == "missing" or isinstance(got, dict | list) else f" (got {_short(got)})"
        problems.append(f"{where}: {err['msg']}{shown}")
    if len(errors) > MAX_PROBLEMS:
        problems.append(f"and {len(errors) - MAX_PROBLEMS:,} more problem(s)")
    return "; ".join(problems)


def listed(names: list[str]) -> str:
    """`names` for a message: the first `MAX_PROBLEMS`, each clipped, and how many more there are."""
    shown = ", ".join(clip(name) for name in names[:MAX_PROBLEMS])
    return shown if len(names) <= MAX_PROBLEMS else f"{shown} and {len(names) - MAX_PROBLEMS:,} more"


def _short(value: Any) -> str:
    return clip(repr(value))


def clip(text: str) -> str:
    """`text`, cut to 60 characters: what a caller sent is echoed no longer than that."""
    return text if len(text) <= 60 else text[:57] + "..."


class PayloadTooLarge(InvalidArgument):
    code = "payload_too_large"
    default_hint = "Store large data elsewhere (a file, a URL) and pass a reference to it instead."


class UnknownAgent(AgentBusError):
    code = "unknown_agent"
    default_hint = "Pass your agent id as `agent`, or start the server with AGENTBUS_AGENT set."


class NotFound(AgentBusError):
    code = "not_found"
    default_hint = "Check the id; get_workflow lists workflows and their task ids."


class WrongState(AgentBusError):
    code = "wrong_state"
    default_hint = "Look at the current state with get_workflow and act on that."


class LeaseLost(AgentBusError):
    code = "lease_lost"
    default_hint = (
        "Your lease expired and the task was taken back, so your result was not recorded. "
        "Stop work on it; heartbeat more often than the lease lasts, or claim with a longer lease_seconds."
    )


class NotLockOwner(AgentBusError):
    code = "not_lock_owner"
    default_hint = (
        "Only the lock_token that acquire_lock gave you releases the lock. If your lock expired, "
        "someone else may hold it now: re-read what you wrote, then acquire again."
    )


class InboxFull(AgentBusError):
    code = "inbox_full"
    default_hint = (
        "The recipient has more unread messages than it keeps (it has not read them, or many came at "
        "once); nothing was sent. Check it is alive with list_agents, try again later, or reach it "
        "another way (a task, an event)."
    )


class Forbidden(AgentBusError):
    code = "forbidden"
    default_hint = "Your credentials do not allow this; ask the operator for a token with the right role."


class BackendUnavailable(AgentBusError):
    code = "backend_unavailable"
    default_hint = "Redis is not reachable right now; nothing was changed. Retry in a few seconds."


class InternalError(AgentBusError):
    code = "internal"
    default_hint = "This is a bug in agentbus; the server log has the details. Retrying may help."
