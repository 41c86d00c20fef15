"""The dashboard's charts and inbox threads, read only.

``GET /dashboard/stats`` is the last hour minute by minute (`core.stats.last_hour`): tasks completed,
attempts failed, tasks dead, and the depth of the deepest ready queues, now and at each minute's sample.
``GET /dashboard/inbox?agent=<id>`` is that agent's newest `INBOX_SHOWN` messages, read and unread, grouped
by thread (`Inbox.recent`): looking marks nothing read, so the agent's next ``read_inbox`` still gets them.
Both answer under the dashboard's access rules (`Dashboard._open`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.inbox import Kept
from mcp_agentbus.core.stats import last_hour
from mcp_agentbus.errors import AgentBusError

INBOX_SHOWN = 50  # messages of one inbox, the newest
BODY_SHOWN = 2_000  # characters of a message body; the rest is cut (a body may have 16,384)

Opener = Callable[[Request], Awaitable[AgentBus | Response]]


class DashboardStats:
    """The routes, on the Dashboard's `open` (access checks → the namespace's bus, or the refusal)."""

    def __init__(self, open_bus: Opener, headers: Mapping[str, str]) -> None:
        self._open = open_bus
        self._headers = dict(headers)

    def routes(self) -> list[Route]:
        return [
            Route("/dashboard/stats", self._stats, methods=["GET"]),
            Route("/dashboard/inbox", self._inbox, methods=["GET"]),
        ]

    async def _stats(self, request: Request) -> Response:
        bus = await self._open(request)
        if isinstance(bus, Response):
            return bus
        stats = await last_hour(bus.store)
        return Response(stats.to_json(), media_type="application/json", headers=self._headers)

    async def _inbox(self, request: Request) -> Response:
        bus = await self._open(request)
        if isinstance(bus, Response):
            return bus
        agent = request.query_params.get("agent", "")
        if not agent:
            return _refused(400, "invalid_argument", "which agent's inbox?", "Add ?agent=<agent id>.")
        try:
            kept = await bus.inbox.recent(agent, INBOX_SHOWN)
        except AgentBusError as exc:  # e.g. not an agent id
            return _refused(400, exc.code, exc.message, exc.hint or "Pick an agent from the agents table.")
        body = {"agent": agent, "limit": INBOX_SHOWN, "shown": len(kept), "threads": threads(kept)}
        return JSONResponse(body, headers=self._headers)


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


def _refused(status: int, code: str, message: str, hint: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "hint": hint}}, status_code=status)
