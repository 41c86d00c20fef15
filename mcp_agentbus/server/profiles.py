"""Which tools a server offers: the tool names, the profiles (``worker``, ``coordinator``, ``all``) and
``select_tools``; and the token role ``operator``, a person's: it views and acts from the web dashboard
(`may_act`, as ``all`` may) and calls no agent tools. No MCP here, so ``agentbus token create`` checks a
role without loading the MCP stack."""

from __future__ import annotations

# Every tool, in the order tools/list shows them (server/tools.py registers the functions in this order).
TOOL_NAMES: tuple[str, ...] = (
    "heartbeat",
    "list_agents",
    "create_task",
    "create_workflow",
    "claim_task",
    "complete_task",
    "fail_task",
    "get_workflow",
    "cancel_task",
    "retry_task",
    "send_message",
    "read_inbox",
    "acquire_lock",
    "release_lock",
    "publish_event",
    "read_events",
    "set_state",
    "get_state",
)

PROFILES: dict[str, tuple[str, ...]] = {
    "all": TOOL_NAMES,
    "worker": (
        "heartbeat",
        "claim_task",
        "complete_task",
        "fail_task",
        "get_workflow",
        "send_message",
        "read_inbox",
        "acquire_lock",
        "release_lock",
        "set_state",
        "get_state",
    ),
    "coordinator": (
        "heartbeat",
        "list_agents",
        "create_task",
        "create_workflow",
        "get_workflow",
        "cancel_task",
        "retry_task",
        "send_message",
        "read_inbox",
        "publish_event",
        "read_events",
        "set_state",
        "get_state",
    ),
}


def select_tools(profile: str) -> list[str]:
    """Tool names for a comma list of profile names and tool names, e.g. ``worker,create_task``."""
    names: dict[str, None] = {}
    unknown = []
    for item in (n.strip() for n in profile.split(",")):
        if item in PROFILES:
            names.update(dict.fromkeys(PROFILES[item]))
        elif item in TOOL_NAMES:
            names[item] = None
        elif item:
            unknown.append(item)
    if unknown or not names:
        raise ValueError(
            f"{profile!r}: unknown tool(s) {', '.join(unknown) or '(none given)'}; use profiles "
            f"({', '.join(PROFILES)}) and tools ({', '.join(TOOL_NAMES)}), comma-separated"
        )
    return list(names)


OPERATOR = "operator"  # a person's dashboard token: it may act there, and may call no tool
ACTING_ROLES = (OPERATOR, "all")  # the roles whose tokens may act from the dashboard


def may_act(role: str) -> bool:
    """Whether a token of `role` may act from the dashboard (send, cancel, retry, release); every other
    valid token of its namespace may only view it."""
    return any(item.strip() in ACTING_ROLES for item in role.split(","))


def check_role(role: str) -> None:
    """Refuse (ValueError) a role a token cannot have: ``operator`` alone, or tools and profiles."""
    items = [item.strip() for item in role.split(",")]
    if OPERATOR not in items:
        select_tools(role)
    elif len(items) > 1:
        raise ValueError(
            f"{role!r}: {OPERATOR} is a person's dashboard role and stands alone; give an agent its own "
            "token (worker, coordinator, all or tool names)"
        )
