"""Control of work in flight: cancel a task or a whole workflow, and retry a task that is dead or cancelled.

Each is one Lua script (``cancel_task``, ``retry_task``) that also writes its events; the cascades they
start (cancelling what depends on a cancelled task, restoring what a retried task had cancelled) share
the per-call budget of ``include/tasks.lua``, and the reaper finishes what one call leaves.
"""

from __future__ import annotations

from mcp_agentbus.core.models import CancelResult, RetryResult
from mcp_agentbus.core.tasks import CANCELLING_MORE, idempotency_scope
from mcp_agentbus.errors import InvalidArgument
from mcp_agentbus.ids import AGENT_RE, IDEMPOTENCY_KEY_RE, TASK_ID_RE, WORKFLOW_ID_RE
from mcp_agentbus.redis.replies import CANCEL_TASK, RETRY_TASK
from mcp_agentbus.redis.store import Store, require

MAX_REASON = 500  # characters; the reason is every cancelled task's error and its late holder's lease_lost
# A holder's notice quotes at most this much of it: its lost-list keeps 50 entries (include/common.lua).
NOTICE_REASON = 100

RESTORING_MORE = (
    "Tasks further downstream of {task} that were cancelled because of it are being restored by the bus "
    "too, within seconds; `restored` lists only the {n} this call restored."
)


class Control:
    """Cancel tasks and workflows, retry dead or cancelled tasks."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def cancel(
        self,
        agent: str,
        *,
        task_id: str | None = None,
        workflow_id: str | None = None,
        reason: str,
        idempotency_key: str | None = None,
    ) -> CancelResult:
        """Cancel one task, or every task of a workflow that is not final (the workflow's status becomes
        `cancelled`), and everything that depends on them. A claimed task's lease is taken back at once:
        its holder is told, and its late complete_task gets `lease_lost`. Final tasks are left as they
        are and listed in `already_final`; cancelling again changes nothing."""
        require(agent, AGENT_RE, "agent id")
        if (task_id is None) == (workflow_id is None):
            raise InvalidArgument("pass exactly one of task_id (one task) and workflow_id (all its tasks)")
        if task_id is not None:
            require(task_id, TASK_ID_RE, "task_id")
        if workflow_id is not None:
            require(workflow_id, WORKFLOW_ID_RE, "workflow_id")
        _check(reason, idempotency_key)
        recorded = await self._store.run(
            CANCEL_TASK,
            agent,
            idempotency_scope("cancel_task", agent, idempotency_key),
            task_id or "",
            workflow_id or "",
            reason,
            reason if len(reason) <= NOTICE_REASON else reason[: NOTICE_REASON - 1] + "…",
        )
        first = recorded.result
        cancelled = list(first["cancelled"] or [])  # Lua's cjson writes an empty list as {}
        more = (
            [CANCELLING_MORE.format(task=task_id or workflow_id, n=len(cancelled))] if first["more"] else []
        )
        return CancelResult(
            cancelled=cancelled,
            already_final=list(first["already_final"] or []),
            duplicate=recorded.duplicate,
            notices=more,
        )

    async def retry(
        self, agent: str, task_id: str, *, reason: str, idempotency_key: str | None = None
    ) -> RetryResult:
        """Run a dead or cancelled task again with a fresh attempt budget: `ready`, or `blocked` while a
        dependency is not done. The tasks cancelled because of it come back too (`restored`), and its
        workflow runs again."""
        require(agent, AGENT_RE, "agent id")
        require(task_id, TASK_ID_RE, "task_id")
        _check(reason, idempotency_key)
        recorded = await self._store.run(
            RETRY_TASK, agent, idempotency_scope("retry_task", agent, idempotency_key), task_id, reason
        )
        first = recorded.result
        restored = list(first["restored"] or [])
        return RetryResult(
            task_id=first["task_id"],
            state=first["state"],
            restored=restored,
            duplicate=recorded.duplicate,
            notices=[RESTORING_MORE.format(task=task_id, n=len(restored))] if first["more"] else [],
        )


def _check(reason: str, idempotency_key: str | None) -> None:
    if not reason.strip():
        raise InvalidArgument("reason must say why (it is shown to the agents whose work it ends)")
    if len(reason) > MAX_REASON:
        raise InvalidArgument(f"reason is {len(reason):,} characters; the limit is {MAX_REASON}")
    if idempotency_key is not None:
        require(idempotency_key, IDEMPOTENCY_KEY_RE, "idempotency_key")
