"""Tasks: create, claim (with a server-side wait), complete and fail — each one Lua script."""

from __future__ import annotations

import json
import math
import random
import secrets
from collections.abc import Sequence
from typing import Any, get_args

from mcp_agentbus.core.models import (
    ClaimResult,
    CompleteResult,
    CreateTaskResult,
    FailResult,
    Priority,
    Progress,
    iso,
)
from mcp_agentbus.core.presence import unregistered
from mcp_agentbus.core.waiting import ProgressCallback, Wait
from mcp_agentbus.core.wakeups import ANY_TASK, Wakeups, news_for
from mcp_agentbus.errors import InvalidArgument
from mcp_agentbus.ids import (
    AGENT_RE,
    CAPABILITY_RE,
    IDEMPOTENCY_KEY_RE,
    MAX_DEPENDENCIES,
    MAX_DEPENDENTS,
    MAX_HELD_TASKS,
    MAX_INPUTS_BYTES,
    MAX_WORKFLOW_TASKS,
    TASK_ID_RE,
    WORKFLOW_ID_RE,
    encode_json,
    seconds,
)
from mcp_agentbus.redis.replies import (
    CLAIM_TASK,
    COMPLETE_TASK,
    CREATE_TASK,
    FAIL_TASK,
    RELEASE_TASK,
    Claimed,
    NothingReady,
)
from mcp_agentbus.redis.store import Store, require

PRIORITIES = get_args(Priority)
CREATE_BOUNDS = (MAX_WORKFLOW_TASKS, MAX_DEPENDENTS, MAX_INPUTS_BYTES)  # what create_task.lua checks


def idempotency_scope(tool: str, agent: str, key: str | None) -> str:
    """Idempotency keys are per tool and per agent, so generic keys ("1") of two agents never meet."""
    return f"{tool}:{agent}:{key}" if key else ""


def parse_progress(fields: Sequence[str | None]) -> tuple[str | None, Progress | None]:
    """(status, counts) from the PROGRESS_FIELDS a script returns for a workflow."""
    if not fields or fields[0] is None:
        return None, None
    total, blocked, ready, delayed, claimed, done, dead, cancelled, status = fields
    counts = [int(n or 0) for n in (total, blocked, ready, delayed, claimed, done, dead, cancelled)]
    names = ("total", "blocked", "ready", "delayed", "claimed", "done", "dead", "cancelled")
    return status, Progress(**dict(zip(names, counts, strict=True)))


# Notices of a cascade that a call began and the reaper finishes (include/tasks.lua).
UNBLOCKING_MORE = (
    "The other dependents of {task} are released by the bus within seconds (those whose other dependencies "
    "are done become ready); `unblocked` lists only the {n} this call released."
)
CANCELLING_MORE = (
    "Tasks further downstream of {task} are being cancelled by the bus too, within seconds; `cancelled` "
    "lists only the {n} this call cancelled."
)


class Tasks:
    """Create, claim, complete and fail tasks; a claim leases the task to one agent, fenced."""

    def __init__(self, store: Store, wakeups: Wakeups) -> None:
        self._store = store
        self._wakeups = wakeups
        self._settings = store.settings

    async def create(
        self,
        agent: str,
        *,
        title: str,
        description: str = "",
        capability: str = "any",
        priority: Priority = "normal",
        payload: Any = None,
        depends_on: Sequence[str] = (),
        workflow_id: str | None = None,
        max_attempts: int = 3,
        delay_seconds: float = 0,
        idempotency_key: str | None = None,
        assignee: str | None = None,
    ) -> CreateTaskResult:
        """Queue one task (`ready`, `delayed`, or `blocked` until `depends_on` are done), for `assignee`'s
        claims alone if given; a repeated `idempotency_key` returns the first call's task."""
        require(agent, AGENT_RE, "agent id")
        if assignee is not None:
            require(assignee, AGENT_RE, "assignee")
        require(capability, CAPABILITY_RE, "capability")
        if priority not in PRIORITIES:
            raise InvalidArgument(f"priority {priority!r} is not one of {', '.join(PRIORITIES)}")
        if idempotency_key is not None:
            require(idempotency_key, IDEMPOTENCY_KEY_RE, "idempotency_key")
        deps = list(dict.fromkeys(depends_on))
        if len(deps) > MAX_DEPENDENCIES:
            raise InvalidArgument(f"depends_on lists {len(deps)} tasks; the limit is {MAX_DEPENDENCIES}")
        for dep in deps:
            require(dep, TASK_ID_RE, "task id in depends_on")
        if workflow_id is not None:
            require(workflow_id, WORKFLOW_ID_RE, "workflow_id")
        if max_attempts < 1:
            raise InvalidArgument("max_attempts must be at least 1")
        seconds(delay_seconds, "delay_seconds", allow_zero=True)
        created = await self._store.run(
            CREATE_TASK,
            agent,
            idempotency_scope("create_task", agent, idempotency_key),
            title,
            description,
            capability,
            priority,
            encode_json(payload, "payload"),
            ",".join(deps),
            workflow_id or "",
            max_attempts,
            math.ceil(delay_seconds * 1000),
            *CREATE_BOUNDS,
            assignee or "",
        )
        notices = await unregistered(self._store, [] if created.duplicate else [assignee], "task")
        return CreateTaskResult(**created.result, duplicate=created.duplicate, notices=notices)

    async def claim(
        self,
        agent: str,
        *,
        capabilities: Sequence[str] | None = None,
        lease_seconds: float | None = None,
        task_id: str | None = None,
        wait_seconds: float = 0,
        on_progress: ProgressCallback | None = None,
    ) -> ClaimResult:
        """Lease the best ready task. With `wait_seconds`, wait on the server for one to appear."""
        require(agent, AGENT_RE, "agent id")
        caps = list(dict.fromkeys(capabilities or ()))
        for cap in caps:
            require(cap, CAPABILITY_RE, "capability")
        if task_id is not None:
            require(task_id, TASK_ID_RE, "task_id")
        lease_seconds = self._settings.lease_seconds if lease_seconds is None else lease_seconds
        lease_ms = math.ceil(seconds(lease_seconds, "lease_seconds") * 1000)
        wait = Wait(self._store, wait_seconds, "a task", on_progress)
        # a task assigned to the agent wakes it too; a message for it or a loss ends the wait
        news = (f"task:@{agent}", *news_for(agent))
        # until its first look says which queues a claim without capabilities reads, any ready task wakes it
        topics = [*(f"task:{c}" for c in caps), *news] if caps else [ANY_TASK, *news]
        owed = 0  # wake-ups for ready tasks this claimer alone got, not yet answered by an attempt
        stopped: str | None = None  # why the wait ended early, once it has
        try:
            while True:
                waiting = wait.remaining() > 0 and stopped is None and task_id is None
                async with self._wakeups.claiming(topics, waiting=waiting) as waiter:
                    try:
                        reply = await self._claim_once(agent, lease_ms, task_id or "", ",".join(caps))
                        # This attempt looked after the owed wake-ups came: a task answers one of them
                        # (the others announced tasks for other claimers); no task, and what they
                        # announced is taken already.
                        owed = owed - 1 if isinstance(reply, Claimed) and owed else 0
                        if isinstance(reply, Claimed):
                            return _claimed(reply, wait.notices)
                        if stopped is not None:
                            return _nothing_ready(reply, [*wait.notices, stopped], interrupted=True)
                        if wait.remaining() <= 0 or task_id is not None:
                            return _nothing_ready(reply, wait.notices)
                        topics = [*(f"task:{c}" for c in reply.capabilities), *news]
                        # A delayed task that falls due is a reason to look again, hint or not.
                        due = reply.next_due_ms
                        due_in = math.inf if due is None else (due - reply.now_ms) / 1000
                        await wait.sleep(waiter.event, at_most=max(0.0, due_in))
                        stopped = waiter.stopped_by_news(agent)  # one last look, then say so
                    finally:
                        owed += waiter.hints  # those that came during the attempt or the sleep
        finally:
            if owed:  # leaving (a task taken, the wait over, cancelled): the rest go to other claimers
                self._wakeups.pass_on(topics, owed)

    async def _claim_once(self, agent: str, lease_ms: int, task_id: str, caps: str) -> Claimed | NothingReady:
        """One claim attempt that is never half-done: a task got by a caller that is cancelled meanwhile
        (a client that disconnected or timed out) is handed straight back."""
        token = secrets.token_urlsafe(12)

        async def hand_back(reply: Claimed | NothingReady) -> None:
            if isinstance(reply, Claimed) and reply.lease_token == token:  # not a lease it held already
                await self._store.run(RELEASE_TASK, agent, reply.task_id, token)

        return await self._store.run_or_undo(
            CLAIM_TASK, agent, lease_ms, token, task_id, caps, MAX_HELD_TASKS, undo=hand_back
        )

    async def complete(
        self, agent: str, task_id: str, lease_token: str, *, result: Any = None, summary: str = ""
    ) -> CompleteResult:
        """Record `result` for the task `lease_token` holds and release its dependents; repeating it with
        the same lease changes nothing."""
        require(agent, AGENT_RE, "agent id")
        require(task_id, TASK_ID_RE, "task_id")
        encoded = "null" if result is None else encode_json(result, "result")
        done = await self._store.run(
            COMPLETE_TASK, agent, task_id, lease_token, encoded, summary, MAX_INPUTS_BYTES
        )
        status, counts = parse_progress(done.progress)
        return CompleteResult(
            notices=[UNBLOCKING_MORE.format(task=task_id, n=len(done.unblocked))] if done.more else [],
            task_id=task_id,
            already_completed=done.already,
            unblocked=done.unblocked,
            workflow_id=done.workflow_id or None,
            workflow_status=status,
            progress=counts,
        )

    async def fail(
        self, agent: str, task_id: str, lease_token: str, *, error: str, retry: bool = True
    ) -> FailResult:
        """Give the task back: retried after a backoff while attempts are left and `retry`, else dead
        (and its dependents cancelled)."""
        require(agent, AGENT_RE, "agent id")
        require(task_id, TASK_ID_RE, "task_id")
        failed = await self._store.run(
            FAIL_TASK,
            agent,
            task_id,
            lease_token,
            error,
            "1" if retry else "0",
            random.random(),
            math.ceil(self._settings.retry_backoff_seconds * 1000),
            math.ceil(self._settings.retry_backoff_max_seconds * 1000),
        )
        return FailResult(
            notices=[CANCELLING_MORE.format(task=task_id, n=len(failed.cancelled))] if failed.more else [],
            task_id=task_id,
            state=failed.state,
            retry_at=iso(failed.retry_at_ms) if failed.state != "dead" else None,
            attempts=failed.attempts,
            max_attempts=failed.max_attempts,
            cancelled=failed.cancelled,
            already_failed=failed.already,
        )


def _nothing_ready(reply: NothingReady, notices: list[str], *, interrupted: bool = False) -> ClaimResult:
    return ClaimResult(
        task=None,
        reason="interrupted" if interrupted else "no ready task for your capabilities",
        capabilities=reply.capabilities,
        ready_elsewhere=reply.ready_elsewhere,
        delayed=reply.delayed,
        next_due_at=iso(reply.next_due_ms),
        notices=notices,
    )


def _claimed(claimed: Claimed, notices: list[str]) -> ClaimResult:
    # One validation of nested dicts: pydantic's core builds the three models in half the time its
    # model_construct (Python, unvalidated) takes.
    return ClaimResult.model_validate(
        {
            "task": {
                "id": claimed.task_id,
                "key": claimed.key or None,
                "workflow_id": claimed.workflow_id or None,
                "title": claimed.title,
                "description": claimed.description,
                "capability": claimed.capability,
                "priority": claimed.priority,
                "payload": json.loads(claimed.payload),
                "attempt": claimed.attempt,
                "max_attempts": claimed.max_attempts,
                "inputs": {key: json.loads(result) for key, result in claimed.inputs.items()},
            },
            "lease": {
                "lease_token": claimed.lease_token,
                "fence": claimed.fence,
                "expires_at": iso(claimed.expires_at_ms) or "",
            },
            "capabilities": [claimed.capability],
            "notices": notices,
        }
    )
