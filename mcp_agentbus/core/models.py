"""Result shapes: what the core API returns and each MCP tool's structured result. (``tools/list``
publishes every result as a bare object to stay small, schemas.py; these models are the shapes, and
their field descriptions document them for readers of the code.)"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Priority = Literal["low", "normal", "high", "urgent"]
TaskState = Literal["blocked", "ready", "delayed", "claimed", "done", "dead", "cancelled"]
WorkflowStatus = Literal["running", "done", "failed", "cancelled"]


def iso(ms: int | str | None) -> str | None:
    """Redis milliseconds as an ISO 8601 UTC timestamp (what agents read)."""
    if ms in (None, "", "0", 0):
        return None
    second, milli = divmod(int(ms), 1000)
    return f"{_iso_second(second)}.{milli:03d}Z"


@lru_cache(maxsize=256)
def _iso_second(second: int) -> str:
    # A reply's timestamps mostly fall in the same few seconds: a third of the cost of formatting each.
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


class Result(BaseModel):
    notices: list[str] = Field(default_factory=list, description="Things you should know now.")


class Lease(BaseModel):
    lease_token: str = Field(description="Pass this to complete_task or fail_task.")
    fence: int = Field(
        description="Grows with every claim of this task; task_id+fence is a safe idempotency key."
    )
    expires_at: str = Field(description="When the lease lapses unless you heartbeat (UTC).")


class ClaimedTask(BaseModel):
    id: str
    key: str | None = Field(None, description="The task's key within its workflow.")
    workflow_id: str | None = None
    title: str
    description: str
    capability: str
    priority: Priority
    payload: Any = None
    attempt: int = Field(description="1 on the first claim; counts reclaimed and failed attempts.")
    max_attempts: int
    inputs: dict[str, Any] = Field(
        description="Results of the tasks this one depends on, by task key (or id)."
    )


class ClaimResult(Result):
    task: ClaimedTask | None = Field(description="The claimed task, or null when nothing was ready.")
    lease: Lease | None = None
    reason: str | None = Field(None, description="Why no task was claimed.")
    capabilities: list[str] = Field(default_factory=list, description="The capabilities that were searched.")
    ready_elsewhere: dict[str, int] = Field(
        default_factory=dict, description="Ready tasks of other capabilities, by capability."
    )
    delayed: int = Field(0, description="Tasks waiting for a delay or a retry backoff.")
    next_due_at: str | None = Field(None, description="When the next delayed task becomes ready.")


class CreateTaskResult(Result):
    task_id: str
    state: TaskState
    duplicate: bool = Field(False, description="True when an earlier call with this idempotency_key made it.")


class CreateWorkflowResult(Result):
    workflow_id: str
    task_ids: dict[str, str] = Field(description="Task id by task key.")
    ready: list[str] = Field(description="Keys of the tasks that are ready now.")
    duplicate: bool = False


class Progress(BaseModel):
    total: int = 0
    blocked: int = 0
    ready: int = 0
    delayed: int = 0
    claimed: int = 0
    done: int = 0
    dead: int = 0
    cancelled: int = 0


class CompleteResult(Result):
    task_id: str
    state: Literal["done"] = "done"
    already_completed: bool = Field(False, description="True when this lease had already completed the task.")
    unblocked: list[str] = Field(description="Tasks that became ready (or delayed) because of this one.")
    workflow_id: str | None = None
    workflow_status: WorkflowStatus | None = None
    progress: Progress | None = None


class FailResult(Result):
    task_id: str
    state: Literal["ready", "delayed", "dead"]
    retry_at: str | None = Field(None, description="When the next attempt becomes claimable.")
    attempts: int
    max_attempts: int
    cancelled: list[str] = Field(
        default_factory=list, description="Dependents cancelled because this task is dead."
    )
    already_failed: bool = False


class AgentView(BaseModel):
    agent: str
    status: str
    alive: bool
    capabilities: list[str]
    note: str = ""
    last_seen: str | None = None
    expires_at: str | None = Field(
        None, description="When the agent counts as gone without another heartbeat."
    )
    joined_at: str | None = None
    tasks: list[str] = Field(default_factory=list, description="Tasks whose lease the agent holds.")
    locks: list[str] = Field(default_factory=list, description="Resources the agent holds locks on.")
    assigned: int = Field(0, description="Ready tasks assigned to the agent, waiting for its claim.")


class CancelResult(Result):
    cancelled: list[str] = Field(description="Tasks this call cancelled, dependents included.")
    already_final: list[str] = Field(description="Tasks left as they were: done, dead or cancelled already.")
    duplicate: bool = False


class RetryResult(Result):
    task_id: str
    state: Literal["ready", "blocked"]
    restored: list[str] = Field(description="Dependents cancelled because of it, now waiting again.")
    duplicate: bool = False


class ExtendedLease(BaseModel):
    task_id: str
    expires_at: str


class ExtendedLock(BaseModel):
    resource: str
    expires_at: str


class HeartbeatResult(Result):
    agent: AgentView
    joined: bool = Field(description="True when the agent was not alive before this heartbeat.")
    leases_extended: list[ExtendedLease]
    locks_extended: list[ExtendedLock]
    live_agents: int
    unread_messages: int = Field(description="Messages waiting in your inbox (read_inbox).")


class ListAgentsResult(Result):
    agents: list[AgentView]


class LockResult(Result):
    acquired: bool
    resource: str
    lock_token: str | None = Field(None, description="Pass it to release_lock.")
    fencing_token: int | None = Field(
        None, description="Grows with every grant of this resource; check it where you write."
    )
    expires_at: str | None = Field(None, description="When your lock lapses, or (refused) the holder's.")
    extended: bool = Field(False, description="You already held it; its expiry was pushed back.")
    holder: str | None = Field(None, description="Who holds the conflicting lock (or waits first).")
    conflicting_resource: str | None = None
    waiters: int = Field(0, description="Agents queued for this resource.")


class HeldLock(BaseModel):
    resource: str
    holder: str
    fencing_token: int
    acquired_at: str | None = None
    expires_at: str | None = None
    waiters: int = Field(0, description="Agents queued for it.")


class LocksView(Result):
    locks: list[HeldLock] = Field(description="Held locks, soonest to expire first.")


class ReleaseResult(Result):
    released: bool
    resource: str
    reason: str | None = None


class PublishResult(Result):
    event_id: str = Field(description="The event's id in the log (also a cursor).")
    duplicate: bool = False


class EventView(BaseModel):
    id: str
    topic: str
    agent: str | None = None
    data: Any = None
    at: str


class ReadEventsResult(Result):
    events: list[EventView]
    cursor: str = Field(description="Pass as `after` next time to continue where this read stopped.")


class SendResult(Result):
    message_id: str
    thread_id: str = Field(description="Pass it (or reply_to) to keep a conversation together.")
    recipients: list[str] = Field(description="The agents whose inbox got the message.")
    undelivered: list[str] = Field(
        default_factory=list, description="Agents whose inbox is full of unread messages: not sent to them."
    )
    duplicate: bool = Field(False, description="True when an earlier call with this idempotency_key sent it.")


class MessageView(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    id: str
    sender: str = Field(alias="from")
    to: str = Field(description="As addressed: an agent id, role:<capability> or *.")
    subject: str = ""
    body: str
    data: Any = None
    thread_id: str
    reply_to: str | None = None
    sent_at: str


class ReadInboxResult(Result):
    messages: list[MessageView] = Field(description="Oldest first.")
    unread_remaining: int = Field(description="Unread messages still waiting after this read.")
