"""One demo worker: a process of its own that speaks MCP over HTTP to the bus, as a remote agent would.

    python -m mcp_agentbus.demo.worker --url http://127.0.0.1:PORT/mcp --agent worker-1 --root DIR --out DIR

It heartbeats, claims tasks, analyses a file (or merges every finding into the report), appends a note to
a shared file under a lock, publishes what it found, messages the coordinator, and completes the task. It
leaves when no workflow is running. The coordinator marks one task to crash on: whichever worker
claims it first dies holding it, lease and all, so that another one can finish it on attempt 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_agentbus.cli.words import counted
from mcp_agentbus.demo.analysis import analyse, report, size

LEASE_SECONDS = 3  # short, so a crash is noticed within seconds
PRESENCE_SECONDS = 5
NOTES = "notes.md"  # every worker appends here, so they take turns with a lock
BIG_FILE_LINES = 300
LOOKING = {"get_workflow", "list_agents"}  # tools that act as nobody (no `agent` argument)


class DemoFailed(Exception):
    """The demo could not go on; the message says why."""


class Agent:
    """Tool calls as one agent id; a refused call raises with the server's message."""

    def __init__(self, client: Client, agent: str) -> None:
        self.client, self.agent = client, agent

    async def __call__(self, tool: str, **arguments: Any) -> dict[str, Any]:
        if tool not in LOOKING:
            arguments["agent"] = self.agent
        result = await self.client.call_tool(tool, arguments)
        if result.is_error:
            raise DemoFailed(f"{tool}: {getattr(result.content[0], 'text', result.content)}")
        return result.structured_content or {}


async def work(url: str, agent: str, root: Path, out: Path, pace: float) -> None:
    async with Client(streamable_http_client(url), mode="legacy") as client:
        call = Agent(client, agent)
        await call(
            "heartbeat", status="idle", capabilities=["analyse", "merge"], ttl_seconds=PRESENCE_SECONDS
        )
        while True:
            claim = await call("claim_task", wait_seconds=1, lease_seconds=LEASE_SECONDS)
            task = claim["task"]
            if task is None:
                running = await call("get_workflow")
                if not any(w["status"] == "running" for w in running["workflows"] or []):
                    await call("heartbeat", status="leaving", ttl_seconds=1)
                    print(f"{agent}: no workflow running; leaving", flush=True)
                    return
                await call("heartbeat", status="idle", ttl_seconds=PRESENCE_SECONDS)
                continue
            await call("heartbeat", status=f"on {task['key']}", ttl_seconds=PRESENCE_SECONDS)
            if task["payload"] and task["payload"].get("crash") and task["attempt"] == 1:
                print(
                    f"{agent}: crashing while holding {task['title']} (no complete, no release)", flush=True
                )
                os._exit(3)
            await anyio.sleep(pace)  # what an LLM agent would spend thinking
            if task["key"] == "merge":
                result = await merge(call, task, root, out)
            else:
                result = await analyse_one(call, task, root, out)
            if task["attempt"] > 1:
                await call(
                    "send_message",
                    to="coordinator",
                    subject=f"took over {task['key']}",
                    body=f"finished on attempt {task['attempt']}, after the previous holder's lease expired",
                )
            await call(
                "complete_task",
                task_id=task["id"],
                lease_token=claim["lease"]["lease_token"],
                result=result,
                summary=result.pop("summary"),
            )
            print(f"{agent}: completed {task['title']} (attempt {task['attempt']})", flush=True)


async def analyse_one(call: Agent, task: dict[str, Any], root: Path, out: Path) -> dict[str, Any]:
    finding = analyse(root, task["payload"]["path"])
    line = f"- `{finding['file']}`: {size(finding)}"
    await append_under_lock(call, out / NOTES, line, task)
    if finding["lines"] >= BIG_FILE_LINES:
        await call(
            "publish_event", topic="demo.big_file", data={"file": finding["file"], "lines": finding["lines"]}
        )
        await call(
            "send_message",
            to="coordinator",
            subject="big file",
            body=f"{finding['file']} has {counted(finding['lines'], 'line')}",
            data={"file": finding["file"]},
        )
    return {**finding, "summary": size(finding)}


async def merge(call: Agent, task: dict[str, Any], root: Path, out: Path) -> dict[str, Any]:
    findings = [f for key, f in task["inputs"].items() if key.startswith("analyse-")]
    text = report(root, findings)
    lock = await call("acquire_lock", resource="file:report.md", ttl_seconds=30, wait_seconds=10)
    try:
        (out / "report.md").write_text(text, encoding="utf-8")
    finally:
        await call("release_lock", resource="file:report.md", lock_token=lock["lock_token"])
    await call("send_message", to="*", subject="report ready", body=str(out / "report.md"))
    return {
        "report": str(out / "report.md"),
        "summary": f"report of {counted(len(findings), 'file')} written",
    }


async def append_under_lock(call: Agent, path: Path, line: str, task: dict[str, Any]) -> None:
    """Append `line` to a file every worker writes, holding its lock; the fencing token goes with the
    line, so a write by a holder whose lock had lapsed would be recognisable."""
    lock = await call("acquire_lock", resource=f"file:{path.name}", ttl_seconds=10, wait_seconds=10)
    if not lock["acquired"]:
        raise DemoFailed(f"could not lock {path.name}: held by {lock.get('holder')}")
    try:
        with path.open("a", encoding="utf-8") as notes:
            notes.write(f"{line} (fence {lock['fencing_token']}, {task['id']})\n")
    finally:
        await call("release_lock", resource=f"file:{path.name}", lock_token=lock["lock_token"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--agent", required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pace", type=float, default=0.0)
    args = parser.parse_args()
    try:
        anyio.run(work, args.url, args.agent, args.root, args.out, args.pace)
    except (DemoFailed, BaseExceptionGroup) as exc:
        while isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
        print(f"{args.agent}: stopped: {exc}", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
