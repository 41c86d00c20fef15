"""Tasks: create, claim (with a server-side wait), complete and fail — each one Lua script."""

from __future__ import annotations

import json
import math
import random
import secrets
from collections.abc import Sequence
from typing import Any, get_args

import anyio
import anyio.lowlevel

from mcp_agentbus.core.models import (
    ClaimedTask,
    ClaimResult,
    CompleteResult,
    CreateTaskResult,
    FailResult,
    Lease,
    Priority,
    Progress,
    iso,
)
from mcp_agentbus.core.waiting import ProgressCallback, Wait
from mcp_agentbus.core.wakeups import Wakeups
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
from mcp_agentbus.redis.store import Store, require

PRIORITIES = get_args(Priority)


def idempotency_scope(tool: str, agent: str, key: str | None) -> str:
    """Idempotency keys are per tool and per agent, so generic keys ("1") of two agents never meet."""
    return f"{tool}:{agent}:{key}" if key else ""


def parse_progress(fields: Sequence[Any]) -> tuple[str | None, Progress | None]:
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
    ) -> CreateTaskResult:
        require(agent, AGENT_RE, "agent id")
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
        reply = await self._store.run(
            "create_task",
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
            MAX_WORKFLOW_TASKS,
            MAX_DEPENDENTS,
            MAX_INPUTS_BYTES,
        )
        return CreateTaskResult(**json.loads(reply[1]), duplicate=reply[0] == "duplicate")

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
        if lease_seconds is None:
            lease_seconds = self._settings.lease_seconds
        lease_ms = math.ceil(seconds(lease_seconds, "lease_seconds") * 1000)
        wait = Wait(wait_seconds, self._settings.max_wait_seconds, "a task", on_progress)
        topics: list[str] | None = [f"task:{c}" for c in caps] if caps else None
        owed = 0  # wake-ups for ready tasks this claimer alone got, not yet answered by an attempt
        try:
            while True:
                with self._wakeups.claiming(topics) as waiter:
                    try:
                        reply = await self._claim_once(agent, lease_ms, task_id or "", ",".join(caps))
                        result = self._claim_result(reply, wait.notices)
                        # This attempt looked after the owed wake-ups came: a task answers one of them
                        # (the others announced tasks for other claimers); no task, and what they
                        # announced is taken already.
                        owed = owed - 1 if result.task is not None and owed else 0
                        if result.task is not None or wait.remaining() <= 0 or task_id is not None:
                            return result
                        topics = [f"task:{c}" for c in result.capabilities]
                        # A delayed task that falls due is a reason to look again, hint or not.
                        due_in = (int(reply[3]) - int(reply[5])) / 1000 if reply[3] != "" else math.inf
                        await wait.sleep(waiter.event, at_most=max(0.0, due_in))
                    finally:
                        owed += waiter.hints  # those that came during the attempt or the sleep
        finally:
            if owed:  # leaving (a task taken, the wait over, cancelled): the rest go to other claimers
                self._wakeups.pass_on(topics, owed)

    async def _claim_once(self, agent: str, lease_ms: int, task_id: str, caps: str) -> list[Any]:
        """One claim attempt that is never half-done: if the caller is cancelled (a client that
        disconnected or timed out) while the script runs, a task it got is handed straight back."""
        token = secrets.token_urlsafe(12)
        with anyio.CancelScope(shield=True):
            reply = await self._store.run("claim_task", agent, lease_ms, token, task_id, caps, MAX_HELD_TASKS)
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
        except anyio.get_cancelled_exc_class():
            if reply[0] == "ok":
                with anyio.CancelScope(shield=True):
                    await self._store.run("release_task", agent, reply[1], token)
            raise
        return reply

    def _claim_result(self, reply: list[Any], notices: list[str]) -> ClaimResult:
        if reply[0] == "empty":
            _, caps, delayed, next_due, elsewhere, _now = reply
            others = {elsewhere[i]: int(elsewhere[i + 1]) for i in range(0, len(elsewhere), 2)}
            return ClaimResult(
                task=None,
                reason="no ready task for your capabilities",
                capabilities=caps,
                ready_elsewhere=others,
                delayed=int(delayed),
                next_due_at=iso(next_due),
                notices=notices,
            )
        (
            _,
            id_,
            key,
            wf,
            title,
            desc,
            payload,
            cap,
            prio,
            attempt,
            max_attempts,
            fence,
            token,
            expires,
            inputs,
        ) = reply
        # The script's reply has a fixed, trusted shape: skip re-validation on the hot path.
        return ClaimResult.model_construct(
            task=ClaimedTask.model_construct(
                id=id_,
                key=key or None,
                workflow_id=wf or None,
                title=title,
                description=desc,
                capability=cap,
                priority=prio,
                payload=json.loads(payload),
                attempt=int(attempt),
                max_attempts=int(max_attempts),
                inputs={inputs[i]: json.loads(inputs[i + 1]) for i in range(0, len(inputs), 2)},
            ),
            lease=Lease.model_construct(lease_token=token, fence=int(fence), expires_at=iso(expires) or ""),
            reason=None,
            capabilities=[cap],
            ready_elsewhere={},
            delayed=0,
            next_due_at=None,
            notices=notices,
        )

    async def complete(
        self, agent: str, task_id: str, lease_token: str, *, result: Any = None, summary: str = ""
    ) -> CompleteResult:
        require(agent, AGENT_RE, "agent id")
        require(task_id, TASK_ID_RE, "task_id")
        encoded = "null" if result is None else encode_json(result, "result")
        reply = await self._store.run(
            "complete_task", agent, task_id, lease_token, encoded, summary, MAX_INPUTS_BYTES
        )
        _, already, unblocked, wf, progress, more = reply
        status, counts = parse_progress(progress)
        return CompleteResult(
            notices=[UNBLOCKING_MORE.format(task=task_id, n=len(unblocked))] if more == "1" else [],
            task_id=task_id,
            already_completed=already == "1",
            unblocked=unblocked,
            workflow_id=wf or None,
            workflow_status=status,
            progress=counts,
        )

    async def fail(
        self, agent: str, task_id: str, lease_token: str, *, error: str, retry: bool = True
    ) -> FailResult:
        require(agent, AGENT_RE, "agent id")
        require(task_id, TASK_ID_RE, "task_id")
        reply = await self._store.run(
            "fail_task",
            agent,
            task_id,
            lease_token,
            error,
            "1" if retry else "0",
            random.random(),
            math.ceil(self._settings.retry_backoff_seconds * 1000),
            math.ceil(self._settings.retry_backoff_max_seconds * 1000),
        )
        _, already, state, due, cancelled, attempts, max_attempts, more = reply
        return FailResult(
            notices=[CANCELLING_MORE.format(task=task_id, n=len(cancelled))] if more == "1" else [],
            task_id=task_id,
            state=state,
            retry_at=iso(due) if state != "dead" else None,
            attempts=int(attempts),
            max_attempts=int(max_attempts),
            cancelled=cancelled,
            already_failed=already == "1",
        )
