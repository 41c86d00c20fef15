"""The MCP tools: typed, bounded arguments in; one core call; a structured result plus a readable line out.

Each concept's tools live in a module of their own (``tools_tasks``, ``tools_messages``,
``tools_coordination``, ``tools_state``), on what they share (``tooling``); this is their list, in the order
``tools/list`` shows them. The profiles (which tools a server offers) are in ``profiles.py``, which
loads no MCP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.types import ToolAnnotations

from mcp_agentbus.server.tooling import ADDITIVE, IDEMPOTENT, READ_ONLY
from mcp_agentbus.server.tools_coordination import (
    acquire_lock,
    heartbeat,
    list_agents,
    publish_event,
    read_events,
    release_lock,
)
from mcp_agentbus.server.tools_messages import read_inbox, send_message
from mcp_agentbus.server.tools_state import OVERWRITES, get_state, set_state
from mcp_agentbus.server.tools_tasks import (
    cancel_task,
    claim_task,
    complete_task,
    create_task,
    create_workflow,
    fail_task,
    get_workflow,
    retry_task,
)

TOOLS: dict[str, tuple[Callable[..., Any], ToolAnnotations]] = {
    "heartbeat": (heartbeat, IDEMPOTENT),
    "list_agents": (list_agents, READ_ONLY),
    "create_task": (create_task, ADDITIVE),
    "create_workflow": (create_workflow, ADDITIVE),
    "claim_task": (claim_task, ADDITIVE),
    "complete_task": (complete_task, IDEMPOTENT),
    "fail_task": (fail_task, IDEMPOTENT),
    "get_workflow": (get_workflow, READ_ONLY),
    "cancel_task": (cancel_task, IDEMPOTENT),
    "retry_task": (retry_task, ADDITIVE),
    "send_message": (send_message, ADDITIVE),
    "read_inbox": (read_inbox, ADDITIVE),
    "acquire_lock": (acquire_lock, ADDITIVE),
    "release_lock": (release_lock, IDEMPOTENT),
    "publish_event": (publish_event, ADDITIVE),
    "read_events": (read_events, READ_ONLY),
    "set_state": (set_state, OVERWRITES),
    "get_state": (get_state, READ_ONLY),
}
