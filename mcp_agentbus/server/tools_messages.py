"""The inbox tools: send a message, read your inbox."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.types import CallToolResult
from pydantic import Field

from mcp_agentbus.core.inbox import MAX_READ
from mcp_agentbus.core.models import (
    ReadInboxResult,
    SendResult,
)
from mcp_agentbus.ids import (
    MAX_BODY,
    MAX_SUBJECT,
    MessageId,
    Recipient,
    ThreadId,
)
from mcp_agentbus.server import calls
from mcp_agentbus.server.tooling import WAIT, AgentArg, Ctx, IdempotencyArg, progress


async def send_message(
    ctx: Ctx,
    to: Annotated[
        Recipient,
        Field(description="Agent id, role:<capability> or * (all)"),
    ],
    body: Annotated[str, Field(min_length=1, max_length=MAX_BODY)],
    subject: Annotated[str, Field(max_length=MAX_SUBJECT)] = "",
    thread_id: ThreadId | None = None,  # default: reply_to's thread, else a new one
    reply_to: Annotated[MessageId | None, Field(description="A message you received")] = None,
    data: Any = None,
    idempotency_key: IdempotencyArg = None,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, SendResult]:
    """Send to agents' durable inboxes."""
    call = calls.current()
    r = await call.bus.inbox.send(
        call.agent(agent),
        to,
        body,
        subject=subject,
        thread_id=thread_id,
        reply_to=reply_to,
        data=data,
        idempotency_key=idempotency_key,
    )
    line = f"Sent {r.message_id} to {', '.join(r.recipients)} (thread {r.thread_id})"
    return call.ok(r, line + (" earlier, with this key." if r.duplicate else "."))


async def read_inbox(
    ctx: Ctx,
    limit: Annotated[int, Field(ge=1, le=MAX_READ, description="Max messages")] = 20,
    wait_seconds: Annotated[float, Field(ge=0, description=WAIT)] = 0,
    peek: Annotated[bool, Field(description="Don't mark read")] = False,
    thread_id: Annotated[ThreadId | None, Field(description="Only this thread")] = None,
    agent: AgentArg = None,
) -> Annotated[CallToolResult, ReadInboxResult]:
    """Your unread messages, oldest first."""
    call = calls.current()
    r = await call.bus.inbox.read(
        call.agent(agent),
        limit=limit,
        peek=peek,
        thread_id=thread_id,
        wait_seconds=wait_seconds,
        on_progress=progress(ctx),
    )
    lines = [f"{len(r.messages)} message(s), {r.unread_remaining} more unread."]
    lines += [f"{m.id} from {m.sender}: {m.subject or m.body[:80]}" for m in r.messages]
    return call.ok(r, "\n".join(lines), message="messages")
