"""A person's hand on the bus from the dashboard: send a message, cancel a task or a workflow, retry a
task, release (revoke) a stuck lock. Each is a ``POST /dashboard/actions/<name>`` with a JSON body, and
goes through the same core operation and Lua script as the tool that does it, so it writes the same
events; ``GET /dashboard/access`` (dashboard.py) says who the page acts as and whether it may act (the
page hides its buttons otherwise).

Who may act: without a tokens file, anyone the dashboard answers (loopback only); with one, a token of
role ``operator`` or ``all`` (`dashboard.may_act`); any other token of the namespace may only view (403).
An action acts as the token's one agent when its grant names one (``--agent alice``), else as
``human``; without tokens, as ``human``. The page sends its token in a header and no cookie is ever
read, and an action needs ``Content-Type: application/json`` (415 otherwise, from `Dashboard.open`,
after the token's 401), which a form of another site cannot send without the browser asking first (and
the Origin check refusing): no CSRF.
Every reply is JSON: ``{"ok": true, "line": <one sentence for a person>}``, or
``{"error": {"code", "message", "hint"}}`` with a fitting status, nothing written (`dashboard_replies`:
what the bus refuses keeps its code, e.g. 409 ``wrong_state``, 503 ``backend_unavailable``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcp_agentbus.context import Caller, of_token
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.control import MAX_REASON
from mcp_agentbus.core.locks import canonical
from mcp_agentbus.errors import explain_validation
from mcp_agentbus.ids import MAX_BODY, Recipient, Resource, TaskId, ThreadId, WorkflowId
from mcp_agentbus.server.dashboard_replies import answer, refuse, route
from mcp_agentbus.server.profiles import ACTING_ROLES
from mcp_agentbus.server.tokens import Grant

if TYPE_CHECKING:
    from mcp_agentbus.server.dashboard import Dashboard

HUMAN = "human"  # who an action acts as when its token names no one agent (or there are no tokens)
MAX_ACTION_BYTES = 65_536  # one action's JSON body; past it 413, before any of it is parsed


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


B = TypeVar("B", bound=_Body)


class Message(_Body):
    to: Recipient = Field(description="An agent id, role:<capability> (live agents with it) or * (all).")
    body: str = Field(min_length=1, max_length=MAX_BODY)
    thread_id: ThreadId | None = None


class Cancel(_Body):
    task_id: TaskId | None = None
    workflow_id: WorkflowId | None = None
    reason: str = Field(min_length=1, max_length=MAX_REASON)

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.task_id is None) == (self.workflow_id is None):
            raise ValueError("pass exactly one of task_id (one task) and workflow_id (all its tasks)")
        return self


class Retry(_Body):
    task_id: TaskId
    reason: str = Field(min_length=1, max_length=MAX_REASON)


class Release(_Body):
    resource: Resource


class Actions:
    """The action routes of a `Dashboard`, checked by its access checks."""

    def __init__(self, dashboard: Dashboard) -> None:
        self._dashboard = dashboard

    def routes(self) -> list[Route]:
        return [
            route("/dashboard/actions/message", self._post(Message, _message), "POST"),
            route("/dashboard/actions/cancel", self._post(Cancel, _cancel), "POST"),
            route("/dashboard/actions/retry", self._post(Retry, _retry), "POST"),
            route("/dashboard/actions/release", self._post(Release, _release), "POST"),
        ]

    def _post(
        self, model: type[B], act: Callable[[AgentBus, str, B], Awaitable[str]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            opened = await self._dashboard.open(request)
            if isinstance(opened, Response):
                return opened
            bus, grant = opened.bus, opened.grant
            if grant is not None and not opened.may_act:  # without tokens (loopback) anyone may act
                return refuse(
                    403,
                    "forbidden",
                    f"the role {grant.role!r} of your token may view this dashboard but not act from it",
                    f"Acting needs a token of role {' or '.join(ACTING_ROLES)} "
                    "(agentbus token create --role operator).",
                )
            text = await _read(request)
            if text is None:
                return refuse(
                    413,
                    "payload_too_large",
                    f"an action's body is at most {MAX_ACTION_BYTES:,} bytes",
                    f"Send less: a message body is at most {MAX_BODY:,} characters.",
                )
            try:
                body = model.model_validate_json(text)
            except ValidationError as exc:
                return refuse(
                    400,
                    "invalid_argument",
                    explain_validation(exc),
                    f"Send a JSON object with {_fields(model)}.",
                )
            owner = "" if grant is None else of_token(grant.id)
            line = await act(bus.acting(Caller(None, owner)), acting_as(grant), body)
            return answer({"ok": True, "line": line})

        return endpoint


def acting_as(grant: Grant | None) -> str:
    """Who an action of a request with `grant` acts as: the grant's one agent, else `HUMAN`."""
    return (grant.default_agent if grant is not None else None) or HUMAN


async def _message(bus: AgentBus, who: str, body: Message) -> str:
    sent = await bus.inbox.send(who, body.to, body.body, thread_id=body.thread_id)
    to = ", ".join(sent.recipients) or "no one"
    if body.to.startswith(("role:", "*")):  # say whom it reached
        to = f"{body.to} ({to})"
    line = f"Sent to {to} as {who} (message {sent.message_id})"
    if sent.undelivered:
        line += f"; not delivered to {', '.join(sent.undelivered)}, whose inbox is full of unread messages"
    return line + "."


async def _cancel(bus: AgentBus, who: str, body: Cancel) -> str:
    done = await bus.control.cancel(
        who, task_id=body.task_id, workflow_id=body.workflow_id, reason=body.reason
    )
    what = f"task {body.task_id}" if body.task_id else f"workflow {body.workflow_id}"
    line = f"Cancelled {what} as {who}: {len(done.cancelled)} task(s) cancelled"
    if done.cancelled:
        line += f" ({', '.join(done.cancelled)}); any holder lost its lease at once"
    if done.already_final:
        line += f"; already finished, left as they were: {', '.join(done.already_final)}"
    return line + "."


async def _retry(bus: AgentBus, who: str, body: Retry) -> str:
    done = await bus.control.retry(who, body.task_id, reason=body.reason)
    line = f"Task {done.task_id} is {done.state} again (retried as {who})"
    if done.restored:
        line += f"; restored: {', '.join(done.restored)}"
    return line + "."


async def _release(bus: AgentBus, who: str, body: Release) -> str:
    taken = await bus.locks.revoke(body.resource, who)
    line = (
        f"Released the lock on {canonical(body.resource)} held by {taken.holder} (fencing token "
        f"{taken.fencing_token}); "
        f"{taken.holder} is told on its next call"
    )
    if taken.waiters:
        line += f", and the first of its {taken.waiters} waiter(s) takes it next"
    return line + "."


async def _read(request: Request) -> bytes | None:
    """The request's body, or None past MAX_ACTION_BYTES (read no further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_ACTION_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _fields(model: type[_Body]) -> str:
    return ", ".join(
        name + ("" if field.is_required() else " (optional)") for name, field in model.model_fields.items()
    )
