"""The prompts: the protocol of each role, in a few lines an LLM can follow."""

from __future__ import annotations

import json

from mcp_agentbus.server.tooling import FENCES


def instructions(wait_cap: float) -> str:
    """The server's instructions (sent once at initialize): the loop of each role, in one paragraph, and
    this server's cap on waits."""
    return f"""\
agentbus coordinates agents through a shared Redis. Workers: heartbeat, then loop claim_task
(with wait_seconds) -> do the work -> complete_task or fail_task with the lease_token; heartbeat more
often than your lease lasts; acquire_lock before editing a shared file. Coordinators: create_workflow
to split a goal into dependent tasks, get_workflow and read_events to follow it. Everyone:
send_message/read_inbox to talk, set_state/get_state to share small values (a plan, a counter), and
read the `notices` in every result. `agent` is your
agent id (default: the server's AGENTBUS_AGENT): pass your own on every call when several agents (for
example subagents) share one server. A wait (wait_seconds) lasts at most {wait_cap:g} s on this
server: call again to wait longer. Prompts `worker` and `coordinator` teach the loop."""


def coordinator(goal: str = "", agent: str = "coordinator") -> str:
    """How to split a goal into a workflow of tasks and see it through."""
    goal_line = f"Your goal: {goal}\n\n" if goal else ""
    return f"""{goal_line}You coordinate agents through agentbus as {agent!r} (pass it as `agent`).
1. heartbeat(agent, status="planning"), then list_agents to see who is alive and what they can do.
2. create_workflow: one task per independent piece of work, each with a short key, a clear title, a
   description a worker can act on alone, and the capability it needs. Use depends_on (keys) for
   order; a dependent task receives the results of what it depends on as `inputs`. Make the last
   task merge the results. Pass an idempotency_key so a retried call creates nothing twice.
3. Follow it: read_events(topics=["task.*", "workflow.*"], wait_seconds=20) with the cursor you
   got last time, get_workflow(workflow_id, detail="summary") to see where each task stands, and
   get_workflow(workflow_id) for the results. Answer questions with
   read_inbox / send_message (to an agent id, role:<capability>, or *).
4. A dead task has an error: fix the cause, then retry_task it (its cancelled dependents come back),
   or tell the user. If the plan changes, cancel_task what is no longer wanted, with a reason. Keep
   shared facts (the plan, a results table) in set_state / get_state. The workflow is finished when
   get_workflow says done (or failed); report its final result.
Heartbeat at least every minute while you work."""


def worker(agent: str = "worker", capabilities: str = "") -> str:
    """The worker loop: heartbeat, claim, lock what you edit, complete or fail, read the inbox."""
    names = [c.strip() for c in capabilities.split(",") if c.strip()]
    caps = f", capabilities={json.dumps(names)}" if names else ""
    return f"""You are a worker on agentbus as {agent!r} (pass it as `agent` on every call).
1. heartbeat(agent{caps}, status="idle").
2. claim_task(agent, wait_seconds=20). If task is null, read_inbox and claim again.
3. Do the task: its description, payload and `inputs` (results of the tasks it depends on). Before
   changing a file, acquire_lock(resource=<path>); if refused, work on something else or wait
   (wait_seconds); release_lock when done. {FENCES} So pass task_id + fence with whatever you
   write for the task, and the fencing_token with each write to a file you locked.
4. heartbeat every ~30 s while working, with progress={{"task_id", "percent", "message"}}: it keeps
   your lease and locks alive. If a call says lease_lost or a notice says the task was cancelled,
   stop work on it.
5. complete_task(task_id, lease_token, result, summary) — or fail_task(task_id, lease_token,
   error, retry=true|false). Then read_inbox and act on anything addressed to you.
6. Back to step 2 until there is no more work. Read every `notices` line in results."""
