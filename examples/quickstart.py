"""A coordinator and three workers on one bus, all speaking MCP, in one process.

    python examples/quickstart.py                      # embedded store (memory://)
    AGENTBUS_REDIS_URL=redis://localhost:6379/0 python examples/quickstart.py

The coordinator creates a three-level workflow (fetch -> two analyses -> report). Workers claim
tasks, read their dependencies' results from `inputs`, and complete them. One worker "crashes"
after its first claim: its lease expires, the reaper takes the task back, and another worker
finishes it on attempt 2.
"""

from __future__ import annotations

import json
import os
from typing import Any

import anyio
from mcp import Client

from mcp_agentbus import Settings, build_server

WORKFLOW = [
    {"key": "fetch", "title": "Fetch the data", "payload": {"rows": [3, 1, 4, 1, 5, 9, 2, 6]}},
    {"key": "stats", "title": "Compute statistics", "depends_on": ["fetch"]},
    {"key": "sorted", "title": "Sort the rows", "depends_on": ["fetch"]},
    {"key": "report", "title": "Write the report", "depends_on": ["stats", "sorted"]},
]


def work(task: dict[str, Any]) -> Any:
    """What each step does with its payload and its dependencies' results."""
    inputs = task["inputs"]
    match task["key"]:
        case "fetch":
            return task["payload"]["rows"]
        case "stats":
            rows = inputs["fetch"]
            return {"n": len(rows), "sum": sum(rows), "max": max(rows)}
        case "sorted":
            return sorted(inputs["fetch"])
        case _:
            return f"{inputs['stats']['n']} rows, max {inputs['stats']['max']}, sorted: {inputs['sorted']}"


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    if result.is_error:
        raise RuntimeError(result.content[0].text)  # type: ignore[union-attr]
    data: dict[str, Any] = result.structured_content or {}
    return data


async def worker(client: Client, name: str, done: anyio.Event, crash: bool = False) -> None:
    await call(client, "heartbeat", agent=name, status="idle")
    while not done.is_set():
        claim = await call(client, "claim_task", agent=name, wait_seconds=1, lease_seconds=1)
        task = claim["task"]
        if task is None:
            continue
        print(f"  {name:<8} claimed {task['key']:<7} (attempt {task['attempt']})")
        if crash:
            print(f"  {name:<8} crashes while holding {task['key']}; its lease will expire")
            return
        await call(
            client,
            "complete_task",
            agent=name,
            task_id=task["id"],
            lease_token=claim["lease"]["lease_token"],
            result=work(task),
            summary=f"{task['key']} done",
        )


async def main() -> None:
    settings = Settings(
        redis_url=os.environ.get("AGENTBUS_REDIS_URL", "memory://quickstart"),
        namespace="quickstart",
        reaper_interval_seconds=0.2,
    )
    async with Client(build_server(settings)) as client:
        created = await call(client, "create_workflow", agent="planner", title="Quickstart", tasks=WORKFLOW)
        workflow_id = created["workflow_id"]
        print(f"planner created {workflow_id}: {', '.join(created['task_ids'])}")
        done = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker, client, "crashy", done, True)
            await anyio.sleep(0.05)  # let crashy take the first task, so the recovery is visible
            for name in ("alice", "bob"):
                tg.start_soon(worker, client, name, done)
            with anyio.fail_after(30):
                while True:
                    view = (await call(client, "get_workflow", workflow_id=workflow_id))["workflow"]
                    if view["status"] != "running":
                        break
                    await anyio.sleep(0.2)
            done.set()
        print(f"workflow {view['status']}: {view['progress']['done']}/{view['progress']['total']} done")
        report = next(t for t in view["tasks"] if t["key"] == "report")
        print("report:", json.dumps(report["result"]))


if __name__ == "__main__":
    anyio.run(main)
