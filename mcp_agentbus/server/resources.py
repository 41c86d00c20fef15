"""Resources: read-only JSON views of the bus at ``agentbus://`` URIs, and which of them a wake-up
hint changes (so subscribers can be told)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.locks import canonical
from mcp_agentbus.core.models import Result
from mcp_agentbus.errors import InvalidArgument, NotFound
from mcp_agentbus.ids import AGENT_RE, EVENT_PATTERN_RE, RESOURCE_RE, WORKFLOW_ID_RE
from mcp_agentbus.server.replies import keep_fitting


@dataclass(frozen=True)
class View:
    uri: str  # a URI template when it has a {variable}
    name: str
    description: str


VIEWS = (
    View(
        "agentbus://agents", "agents", "Live agents: status, capabilities, last seen, held tasks and locks."
    ),
    View("agentbus://workflows", "workflows", "Recent workflows with their progress."),
    View(
        "agentbus://workflows/{workflow_id}",
        "workflow",
        "One workflow: status, progress and every task with state, assignee, attempts, result or error.",
    ),
    View(
        "agentbus://inbox/{agent}",
        "inbox",
        "An agent's unread messages, oldest first. Reading this never marks them read.",
    ),
    View("agentbus://locks", "locks", "Held locks: resource, holder, fencing token, expiry, waiters."),
    View(
        "agentbus://events/{topic}",
        "events",
        "The newest events of a topic, e.g. task.completed; patterns such as task.* or * also work.",
    ),
    View(
        "agentbus://state/{key}",
        "state",
        "One shared-state key (get_state): its value, version, who set it and when, and its expiry.",
    ),
)
PREFIX = "agentbus://"
URL_SAFE = "/:@!$&'()*+,;=[]?#~"  # what a URL type (pydantic's AnyUrl) leaves as it is in a path
INBOX_PEEK_LIMIT = 100


_ARGUMENT: dict[str, re.Pattern[str] | None] = {  # the format of each view's variable, if it has one
    "agents": None,
    "workflows": WORKFLOW_ID_RE,  # optional
    "inbox": AGENT_RE,
    "locks": None,
    "events": EVENT_PATTERN_RE,
    "state": RESOURCE_RE,  # a key: path-like, so the rest of the URI, slashes and all
}


def parse(uri: str) -> tuple[str, str]:
    """(view, argument) of an agentbus URI; refused unless it names a view with a valid argument."""
    kind, _, arg = uri.removeprefix(PREFIX).partition("/")
    if kind == "state":  # a key may have characters a client's URL type percent-encodes
        arg = unquote(arg)
    pattern = _ARGUMENT.get(kind)
    if not uri.startswith(PREFIX) or kind not in _ARGUMENT or (pattern is None and arg):
        raise NotFound(f"there is no resource {uri!r}", hint="Resources: " + ", ".join(v.uri for v in VIEWS))
    if pattern is not None and (arg or kind != "workflows") and not pattern.fullmatch(arg):
        # fullmatch: the patterns end in `$`, which `match` lets a trailing newline through
        raise InvalidArgument(f"{kind} in the URI, {arg!r}, is not valid (expected {pattern.pattern})")
    return kind, arg


def require_followable(uri: str) -> None:
    """Refuse a state URI that spells its key otherwise than the bus names it (`canonical`): its updates
    are announced under the bus's name alone, so a subscription to another spelling would hear nothing."""
    kind, arg = parse(uri)
    if kind == "state" and (key := canonical(arg, "state key")) != arg:
        raise InvalidArgument(
            f"state key {arg!r} is named {key!r} on the bus, and its updates are announced under that name",
            hint=f"Subscribe to {PREFIX}state/{quote(key, safe=URL_SAFE)} instead.",
        )


async def read(bus: AgentBus, uri: str) -> str:
    """The JSON text of the resource at `uri`."""
    kind, arg = parse(uri)
    view: Result
    if kind == "agents":
        agents = await bus.presence.list_agents()
        agents.agents, agents.notices = keep_fitting(
            agents.agents, "agent(s)", "list_agents filters by capability"
        )
        view = agents
    elif kind == "workflows":
        view = await bus.workflows.get(arg or None)
    elif kind == "inbox":
        view = await bus.inbox.read(arg, peek=True, limit=INBOX_PEEK_LIMIT)
    elif kind == "locks":
        locks = await bus.locks.held()
        locks.locks, locks.notices = keep_fitting(locks.locks, "lock(s)", "the soonest to expire are shown")
        view = locks
    elif kind == "state":
        view = await bus.state.get(arg)
    else:
        view = await bus.events.recent(arg)
    # Notices only when the read itself has some (what it left out): resources are nobody's own view.
    shown = view.model_dump(mode="json", exclude=None if view.notices else {"notices"})
    return json.dumps(shown, ensure_ascii=False)


def changed_by(hint: str) -> set[str]:
    """The resource URIs a wake-up hint (see ``lua/include/common.lua``) says may have changed."""
    kind, _, subject = hint.partition(":")
    if kind == "inbox":
        return {f"{PREFIX}inbox/{subject}"}
    if kind == "workflow":
        return {f"{PREFIX}workflows", f"{PREFIX}workflows/{subject}"}
    if kind == "locks":  # a lock extended, or a waiter queued or gone
        return {f"{PREFIX}locks"}
    if kind == "state":  # set, deleted or expired: under the key as it is, and percent-encoded
        return {f"{PREFIX}state/{subject}", f"{PREFIX}state/{quote(subject, safe=URL_SAFE)}"}
    if kind != "event":
        return set()
    # An event is announced under its exact topic, each dotted prefix with '.*', and '*'.
    parts = subject.split(".")
    uris = {f"{PREFIX}events/{subject}", f"{PREFIX}events/*"}
    uris |= {f"{PREFIX}events/{'.'.join(parts[:i])}.*" for i in range(1, len(parts))}
    family = parts[0]
    if family in ("agent", "lock") or (family == "task" and subject != "task.created"):
        uris.add(f"{PREFIX}agents")  # agents show the tasks and locks they hold
    if family == "lock":
        uris.add(f"{PREFIX}locks")
    if family == "workflow":
        uris.add(f"{PREFIX}workflows")
    return uris
