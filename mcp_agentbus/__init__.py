"""mcp-agentbus: an MCP server that turns one Redis into a coordination bus for LLM agents.

The public surface: the errors every call may raise, the typed results of the core API, `AgentBus` (the
core API), `Settings` and `build_server` (the MCP server). The floors below load on first use: the core
when `AgentBus` or a result model is first touched, the MCP stack only when a server is built, so quick
commands (`agentbus hook`, `token`, `local`) and users of the core API do not pay for what they skip.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mcp_agentbus.errors import (
    AgentBusError,
    BackendUnavailable,
    Forbidden,
    InboxFull,
    InternalError,
    InvalidArgument,
    LeaseLost,
    NotFound,
    NotLockOwner,
    PayloadTooLarge,
    UnknownAgent,
    WrongState,
)
from mcp_agentbus.settings import Settings

if TYPE_CHECKING:
    from mcp_agentbus.core.bus import AgentBus
    from mcp_agentbus.core.models import (
        AgentView,
        CancelResult,
        ClaimedTask,
        ClaimResult,
        CompleteResult,
        CreateTaskResult,
        CreateWorkflowResult,
        EventView,
        ExtendedLease,
        ExtendedLock,
        FailResult,
        HeartbeatResult,
        HeldLock,
        Lease,
        ListAgentsResult,
        LockResult,
        LocksView,
        MessageView,
        Progress,
        PublishResult,
        ReadEventsResult,
        ReadInboxResult,
        ReleaseResult,
        Result,
        RetryResult,
        SendResult,
    )
    from mcp_agentbus.core.state import (
        GetStateResult,
        SetStateResult,
        StateEntry,
    )
    from mcp_agentbus.core.workflow_views import (
        GetWorkflowBriefResult,
        GetWorkflowReply,
        GetWorkflowResult,
        TaskBrief,
        TaskProgress,
        TaskView,
        WorkflowBrief,
        WorkflowSummary,
        WorkflowView,
    )
    from mcp_agentbus.server.app import build_server

__version__ = "0.1.0"

_RESULT_MODELS = (
    "AgentView",
    "CancelResult",
    "ClaimResult",
    "ClaimedTask",
    "CompleteResult",
    "CreateTaskResult",
    "CreateWorkflowResult",
    "EventView",
    "ExtendedLease",
    "ExtendedLock",
    "FailResult",
    "HeartbeatResult",
    "HeldLock",
    "Lease",
    "ListAgentsResult",
    "LockResult",
    "LocksView",
    "MessageView",
    "Progress",
    "PublishResult",
    "ReadEventsResult",
    "ReadInboxResult",
    "ReleaseResult",
    "Result",
    "RetryResult",
    "SendResult",
)
_WORKFLOW_VIEWS = (
    "GetWorkflowBriefResult",
    "GetWorkflowReply",
    "GetWorkflowResult",
    "TaskBrief",
    "TaskProgress",
    "TaskView",
    "WorkflowBrief",
    "WorkflowSummary",
    "WorkflowView",
)
_STATE_MODELS = (
    "GetStateResult",
    "SetStateResult",
    "StateEntry",
)
_LAZY = {
    "AgentBus": "mcp_agentbus.core.bus",
    "build_server": "mcp_agentbus.server.app",
    **dict.fromkeys(_RESULT_MODELS, "mcp_agentbus.core.models"),
    **dict.fromkeys(_WORKFLOW_VIEWS, "mcp_agentbus.core.workflow_views"),
    **dict.fromkeys(_STATE_MODELS, "mcp_agentbus.core.state"),
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "AgentBus",
    "AgentBusError",
    "AgentView",
    "BackendUnavailable",
    "CancelResult",
    "ClaimResult",
    "ClaimedTask",
    "CompleteResult",
    "CreateTaskResult",
    "CreateWorkflowResult",
    "EventView",
    "ExtendedLease",
    "ExtendedLock",
    "FailResult",
    "Forbidden",
    "GetStateResult",
    "GetWorkflowBriefResult",
    "GetWorkflowReply",
    "GetWorkflowResult",
    "HeartbeatResult",
    "HeldLock",
    "InboxFull",
    "InternalError",
    "InvalidArgument",
    "Lease",
    "LeaseLost",
    "ListAgentsResult",
    "LockResult",
    "LocksView",
    "MessageView",
    "NotFound",
    "NotLockOwner",
    "PayloadTooLarge",
    "Progress",
    "PublishResult",
    "ReadEventsResult",
    "ReadInboxResult",
    "ReleaseResult",
    "Result",
    "RetryResult",
    "SendResult",
    "SetStateResult",
    "Settings",
    "StateEntry",
    "TaskBrief",
    "TaskProgress",
    "TaskView",
    "UnknownAgent",
    "WorkflowBrief",
    "WorkflowSummary",
    "WorkflowView",
    "WrongState",
    "__version__",
    "build_server",
]
