"""A coordinator: creates a workflow (a small DAG of tasks) on agentbus, follows it to the end and
prints the results.

    python examples/coordinator.py &
    python examples/runner.py 3             # three examples/worker.py processes do the tasks

The workflow counts the words of three documents: `fetch` hands the documents on, three `count-*`
tasks (which depend on it) run in parallel, `merge` adds their counts up and `report` words the
result. `count-b` fails on its first attempt, so you see fail_task and the retry. Each task gets the
results of the tasks it depends on as `inputs`.

Like any MCP host, it starts its own `agentbus serve` (stdio) with this environment passed through:
run it and the workers with the same AGENTBUS_NAMESPACE (and AGENTBUS_REDIS_URL, if you set one).
While the workflow runs it waits on the bus's event log (read_events with wait_seconds, a wait on
the server, not polling) and re-reads get_workflow whenever something happened.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

DOCUMENTS = {
    "a": "The bus hands work to agents. Agents claim the work, do it, and hand it back.",
    "b": "A lease says who holds a task; a heartbeat keeps the lease alive while the agent works.",
    "c": "When an agent dies, its lease expires and the bus gives the task to another agent.",
}

WORKFLOW: list[dict[str, Any]] = [
    {"key": "fetch", "title": "Fetch the documents", "payload": {"op": "fetch", "documents": DOCUMENTS}},
    *(
        {
            "key": f"count-{doc}",
            "title": f"Count the words of document {doc}",
            "depends_on": ["fetch"],
            "payload": {"op": "count", "document": doc, "flaky": doc == "b"},
            "max_attempts": 3,
        }
        for doc in DOCUMENTS
    ),
    {
        "key": "merge",
        "title": "Add the counts up",
        "depends_on": [f"count-{doc}" for doc in DOCUMENTS],
        "payload": {"op": "merge"},
    },
    {"key": "report", "title": "Write the report", "depends_on": ["merge"], "payload": {"op": "report"}},
]


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call an agentbus tool and return its structured result; raise if it refused."""
    result = await client.call_tool(tool, arguments)
    data: dict[str, Any] = result.structured_content or {}
    if result.is_error:
        error = data.get("error", {})
        raise RuntimeError(f"{tool}: {error.get('code', 'error')}: {error.get('message', result.content)}")
    return data


def progress_line(view: dict[str, Any]) -> str:
    counts = {state: n for state, n in view["progress"].items() if n and state != "total"}
    states = ", ".join(f"{n} {state}" for state, n in counts.items())
    return f"progress: {view['progress']['done']}/{view['progress']['total']} done ({states})"


async def follow(client: Client, workflow_id: str, cursor: str) -> dict[str, Any]:
    """Print the workflow's progress whenever it changes, until it is finished; return its view."""
    last = ""
    while True:
        view: dict[str, Any] = (await call(client, "get_workflow", workflow_id=workflow_id))["workflow"]
        line = progress_line(view)
        if line != last:
            print(line, flush=True)
            last = line
        if view["status"] != "running":
            return view
        await call(client, "heartbeat", status="busy", note=f"following {workflow_id}")
        # Sleep until a task or workflow event arrives (or 10 s pass): the wait is on the server.
        events = await call(
            client, "read_events", topics=["task.*", "workflow.*"], after=cursor, wait_seconds=10
        )
        cursor = events["cursor"]


async def run(args: argparse.Namespace) -> int:
    me = args.agent
    server = StdioServerParameters(
        command=args.server[0], args=args.server[1:], env={**os.environ, "AGENTBUS_AGENT": me}
    )
    async with Client(stdio_client(server)) as client:
        await call(client, "heartbeat", status="planning", note="coordinator.py")
        cursor = (await call(client, "read_events", limit=1))["cursor"]  # "now": later events wake us
        created = await call(client, "create_workflow", title="Count the words", tasks=WORKFLOW)
        workflow_id = created["workflow_id"]
        print(f"{me}: created {workflow_id}: {', '.join(created['task_ids'])}", flush=True)
        try:
            with anyio.fail_after(args.timeout):
                view = await follow(client, workflow_id, cursor)
        except TimeoutError:
            print(f"{me}: {workflow_id} is still running after {args.timeout:g} s", file=sys.stderr)
            return 1
        await call(client, "heartbeat", status="idle", note="")

    progress = view["progress"]
    print(f"workflow {view['status']}: {progress['done']}/{progress['total']} done", flush=True)
    for task in view["tasks"]:
        outcome = json.dumps(task["result"]) if task["state"] == "done" else task["error"]
        print(
            f"  {task['key']:<8} {task['state']:<9} by {task['assignee']} "
            f"in {task['attempts']} attempt{'s' if task['attempts'] != 1 else ''}: {outcome}"
        )
    report = next(task for task in view["tasks"] if task["key"] == "report")
    print(f"report: {report['result']}", flush=True)
    return 0 if view["status"] == "done" else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="coordinator", help="this coordinator's agent id")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument(
        "--server",
        type=shlex.split,
        default=shlex.split("agentbus serve"),
        help="the command that serves agentbus on stdio (default: 'agentbus serve')",
    )
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    try:
        sys.exit(anyio.run(run, args))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
