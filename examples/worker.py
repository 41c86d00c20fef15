"""A worker: claims tasks from agentbus, does them, reports the results. Copy it and change `work`.

    python examples/worker.py --agent worker-1
    python examples/worker.py --agent worker-2 --capabilities text --idle-exit 30 --max-tasks 10

Like Claude Code or any agent runner, it starts its own `agentbus serve` (MCP over stdio) with this
environment passed through, so AGENTBUS_NAMESPACE picks the swarm and AGENTBUS_REDIS_URL the Redis
(unset: the shared local bus). The loop: heartbeat, claim_task (waiting on the server), do the work
while heartbeats keep the lease alive, complete_task, or fail_task when the work raised, which
retries the task with backoff until its max_attempts. It stops after --max-tasks tasks or
--idle-exit seconds without one. If it is killed mid-task, its lease expires and another worker
gets the task.

`work` understands the tasks examples/coordinator.py creates (payload "op": fetch, count, merge,
report); put your own work there.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from collections import Counter
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client


def work(task: dict[str, Any]) -> Any:
    """Do one task: its payload says what, `inputs` holds the results of the tasks it depends on."""
    payload, inputs = task["payload"] or {}, task["inputs"]
    if payload.get("flaky") and task["attempt"] == 1:
        raise RuntimeError("simulated crash on the first attempt")  # shows fail_task and the retry
    match payload.get("op"):
        case "fetch":
            return payload["documents"]
        case "count":
            words = inputs["fetch"][payload["document"]].lower().split()
            return dict(Counter(w.strip(".,;:!?") for w in words))
        case "merge":
            total: Counter[str] = Counter()
            for counts in inputs.values():
                total.update(counts)
            return {"distinct": len(total), "top": total.most_common(3)}
        case "report":
            merged = inputs["merge"]
            top = ", ".join(f"{word} ({n})" for word, n in merged["top"])
            return f"{merged['distinct']} distinct words; most common: {top}"
        case op:
            raise ValueError(f"this worker does not know how to do {op!r}")


class BusError(Exception):
    """A tool answered with an error: its code (lease_lost, invalid_argument, ...) and message."""


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call an agentbus tool and return its structured result; raise BusError if it refused."""
    result = await client.call_tool(tool, arguments)
    data: dict[str, Any] = result.structured_content or {}
    if result.is_error:
        error = data.get("error", {})
        raise BusError(f"{tool}: {error.get('code', 'error')}: {error.get('message', result.content)}")
    return data


async def heartbeats(client: Client, every: float, state: dict[str, str]) -> None:
    """Keep this agent alive, and the lease of the task it holds, while `work` runs."""
    while True:
        await anyio.sleep(every)
        await call(client, "heartbeat", status=state["status"], note=state["note"])


async def stop_on_signal(
    scope: anyio.CancelScope, me: str, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Ctrl-C or SIGTERM: stop cleanly, closing the server. A task held now goes back to the queue
    when its lease expires."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            print(f"{me}: stopping on {signal.Signals(signum).name}", flush=True)
            scope.cancel()
            return


async def run(args: argparse.Namespace) -> int:
    me, idle_exit = args.agent, args.idle_exit or None
    server = StdioServerParameters(
        command=args.server[0],
        args=args.server[1:],
        env={**os.environ, "AGENTBUS_AGENT": me},  # the server's default agent: calls need not name it
    )
    async with Client(stdio_client(server)) as client, anyio.create_task_group() as tg:
        state = {"status": "idle", "note": ""}
        await call(client, "heartbeat", status="idle", capabilities=args.capabilities, note="worker.py")
        tg.start_soon(heartbeats, client, args.heartbeat_every, state)
        await tg.start(stop_on_signal, tg.cancel_scope, me)
        print(f"{me}: waiting for tasks", flush=True)

        done = 0
        idle_since = anyio.current_time()
        while args.max_tasks is None or done < args.max_tasks:
            idle = anyio.current_time() - idle_since
            if idle_exit is not None and idle >= idle_exit:
                print(f"{me}: no task for {idle_exit:g} s, stopping", flush=True)
                break
            wait = args.wait if idle_exit is None else min(args.wait, idle_exit - idle)
            claim = await call(client, "claim_task", wait_seconds=wait)  # waits on the server
            task = claim["task"]
            if task is None:
                continue
            name, lease = task["key"] or task["id"], claim["lease"]
            print(f"{me}: claimed {name} ({task['id']}, attempt {task['attempt']})", flush=True)
            state.update(status="busy", note=f"working on {task['id']}")
            try:
                result = await anyio.to_thread.run_sync(work, task)  # heartbeats go on meanwhile
            except Exception as exc:
                failed = await call(
                    client,
                    "fail_task",
                    task_id=task["id"],
                    lease_token=lease["lease_token"],
                    error=f"{type(exc).__name__}: {exc}",
                )
                print(f"{me}: failed {name}: {exc} -> {failed['state']}", flush=True)
            else:
                await call(
                    client,
                    "complete_task",
                    task_id=task["id"],
                    lease_token=lease["lease_token"],
                    result=result,
                    summary=f"{name} done by {me}",
                )
                done += 1
                print(f"{me}: completed {name}", flush=True)
            state.update(status="idle", note="")
            idle_since = anyio.current_time()

        print(f"{me}: finished after {done} task{'s' if done != 1 else ''}", flush=True)
        tg.cancel_scope.cancel()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", required=True, help="this worker's agent id, e.g. worker-1")
    parser.add_argument(
        "--capabilities",
        type=lambda text: [c for c in text.split(",") if c],
        default=None,
        help="comma list of the kinds of task it takes (default: any)",
    )
    parser.add_argument("--max-tasks", type=int, default=None, help="stop after this many tasks")
    parser.add_argument(
        "--idle-exit",
        type=float,
        default=60.0,
        help="stop after this many seconds without a task (default 60; 0 = never)",
    )
    parser.add_argument("--wait", type=float, default=20.0, help="seconds one claim waits on the server")
    parser.add_argument("--heartbeat-every", type=float, default=20.0, help="seconds between heartbeats")
    parser.add_argument(
        "--server",
        type=shlex.split,
        default=shlex.split("agentbus serve"),
        help="the command that serves agentbus on stdio (default: 'agentbus serve')",
    )
    return parser.parse_args(argv)


def main() -> None:
    sys.exit(anyio.run(run, parse_args()))


if __name__ == "__main__":
    main()
