"""The dashboard's inbox threads, read only: ``GET /dashboard/inbox?agent=<id>`` is that agent's newest
`INBOX_SHOWN` messages, read and unread, grouped by thread (`Inbox.recent`); looking marks nothing read,
so the agent's next ``read_inbox`` still gets them.

Whose inbox a caller may read: over MCP an agent's token reads only the inboxes of the agents it may act
as, and the dashboard is no side door. A token whose role may act from the dashboard (``operator``,
``all``: `dashboard.may_act`) reads every inbox of its namespace, as does anyone without a tokens file
(loopback); any other token only those of the agents its grant covers (`Grant.may_act_as`), 403 otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcp_agentbus.core.inbox import Kept
from mcp_agentbus.server.dashboard_replies import answer, refuse, route
from mcp_agentbus.server.profiles import ACTING_ROLES

if TYPE_CHECKING:
    from mcp_agentbus.server.dashboard import Dashboard

INBOX_SHOWN = 50  # messages of one inbox, the newest
BODY_SHOWN = 2_000  # characters of a message body; the rest is cut (a body may have 16,384)


class Inbox:
    """The inbox route of a `Dashboard`, behind its access checks."""

    def __init__(self, dashboard: Dashboard) -> None:
        self._dashboard = dashboard

    def routes(self) -> list[Route]:
        return [route("/dashboard/inbox", self._inbox)]

    async def _inbox(self, request: Request) -> Response:
        opened = await self._dashboard.open(request)
        if isinstance(opened, Response):
            return opened
        agent = request.query_params.get("agent", "")
        if not agent:
            return refuse(400, "invalid_argument", "which agent's inbox?", "Add ?agent=<agent id>.")
        grant = opened.grant
        if grant is not None and not opened.may_act and not grant.may_act_as(agent):
            return refuse(
                403,
                "forbidden",
                f"your token (agents {grant.agent!r}, role {grant.role!r}) may read the inboxes of its own "
                f"agents only, not {agent[:80]!r}'s",
                f"Pick an agent matching {grant.agent!r}, or use a token of role {' or '.join(ACTING_ROLES)} "
                "(agentbus token create --role operator), which reads every inbox of its namespace.",
            )
        kept = await opened.bus.inbox.recent(agent, INBOX_SHOWN)
        return answer({"agent": agent, "limit": INBOX_SHOWN, "shown": len(kept), "threads": threads(kept)})


def threads(kept: list[Kept]) -> list[dict[str, Any]]:
    """Messages (newest first, as `Inbox.recent` gives them) grouped by thread: the thread with the
    newest message first, and each thread's messages oldest first, as a conversation reads."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for message, unread in kept:
        grouped.setdefault(message.thread_id, []).insert(
            0,
            {
                "id": message.id,
                "from": message.sender,
                "to": message.to,
                "subject": message.subject,
                "body": message.body[:BODY_SHOWN],
                "cut": len(message.body) > BODY_SHOWN,
                "sent_at": message.sent_at,
                "unread": unread,
            },
        )
    return [
        {
            "thread_id": thread_id,
            "subject": next((m["subject"] for m in messages if m["subject"]), ""),
            "last_at": messages[-1]["sent_at"],
            "messages": messages,
        }
        for thread_id, messages in grouped.items()
    ]
