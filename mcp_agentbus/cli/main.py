"""The ``agentbus`` command. On stdio, stdout carries only the protocol; everything else goes to stderr.

Each command group has a module of its own (``serve``, ``status``, ``token``, ``local``, ``guard``); the
small ones (``doctor``, ``hook``, ``demo``) are here."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import click
from pydantic import ValidationError

from mcp_agentbus.cli.common import fail, load_settings
from mcp_agentbus.cli.dashboard import dashboard
from mcp_agentbus.cli.guard import guard
from mcp_agentbus.cli.local import local
from mcp_agentbus.cli.serve import serve
from mcp_agentbus.cli.status import status, watch
from mcp_agentbus.cli.token import token
from mcp_agentbus.errors import AgentBusError
from mcp_agentbus.redis.local import LocalBusError, looking_url
from mcp_agentbus.settings import Settings


@click.group()
@click.version_option(package_name="mcp-agentbus")
def main() -> None:
    """mcp-agentbus: a coordination bus for LLM agents on one Redis, spoken over MCP."""


main.add_command(serve)
main.add_command(status)
main.add_command(watch)
main.add_command(token)
main.add_command(local)
main.add_command(guard)
main.add_command(dashboard)


@main.command()
@click.option("--redis-url", help="The Redis to check [env: AGENTBUS_REDIS_URL]")
@click.option("--namespace", help="[env: AGENTBUS_NAMESPACE]")
def doctor(**flags: Any) -> None:
    """Check the Redis agentbus would use: reachable, version, maxmemory-policy, persistence, script
    loading and round-trip latency, each with what to do. Exits 1 if any check fails."""
    from mcp_agentbus.cli.doctor import diagnose

    settings = load_settings(**flags)
    checks = anyio.run(diagnose, settings)
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    for check in checks:
        click.echo(f"{marks[check.status]}  {check.name}: {check.detail}")
        if check.fix:
            click.echo(f"      -> {check.fix}")
    if any(check.status == "fail" for check in checks):
        sys.exit(1)


@main.command()
@click.option("--agent", help="The agent to look out for [env: AGENTBUS_AGENT].")
@click.option("--namespace", help="[env: AGENTBUS_NAMESPACE]")
@click.option("--redis-url", help="[env: AGENTBUS_REDIS_URL; default: your local bus]")
@click.option(
    "--within",
    type=click.FloatRange(0),
    default=60,
    show_default=True,
    help="Mention leases and locks that lapse within this many seconds.",
)
def hook(within: float, **flags: Any) -> None:
    """A Claude Code hook (UserPromptSubmit, PostToolUse, SessionStart): tells the agent it has unread
    messages, or a lease or lock about to lapse. Reads the hook's JSON on stdin; prints nothing when
    nothing waits, or inside a subagent (whose agent id is its own); always exits 0, so it never gets
    in the agent's way (problems go to stderr)."""
    from mcp_agentbus.cli.hook import look, output, parse_input, tell

    given = parse_input("" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read())
    if given.in_subagent:
        return  # a subagent acts under its own agent id, not this hook's: its news is not for it
    try:
        settings = Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        click.echo(f"agentbus hook: invalid settings: {exc.errors(include_url=False)[0]['msg']}", err=True)
        return
    if settings.agent is None or settings.redis_url.startswith("memory://"):
        click.echo("agentbus hook: nothing to look at (pass --agent, and a shared Redis)", err=True)
        return
    url = looking_url(settings.redis_url)
    if url is None:
        return  # the local bus is not running: nothing can be waiting
    try:
        waiting = anyio.run(look, url, settings.namespace, settings.agent)
    except Exception as exc:  # whatever went wrong, the agent must carry on
        click.echo(f"agentbus hook: could not look at the bus: {exc or type(exc).__name__}", err=True)
        return
    text = tell(settings.agent, waiting, within)
    if text:
        click.echo(output(given.event, text))


@main.command()
@click.option(
    "--dir",
    "root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path(__file__).parents[1],
    help="The source tree to analyse [default: agentbus's own source].",
)
@click.option("--workers", type=click.IntRange(2, 12), default=4, show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the report, notes and worker logs go [default: a new temporary directory].",
)
@click.option(
    "--pace",
    type=click.FloatRange(0, 5),
    default=0.25,
    show_default=True,
    help="Seconds each task takes to 'think', so there is something to watch.",
)
@click.option(
    "--limit", type=click.IntRange(1, 500), default=60, show_default=True, help="At most this many files."
)
@click.option(
    "--redis-url",
    help="Run on this Redis instead of an embedded store, e.g. local:// to follow it from another "
    "terminal with `agentbus watch --namespace demo-…`.",
)
def demo(root: Path, workers: int, out: Path | None, pace: float, limit: int, redis_url: str | None) -> None:
    """Watch agents coordinate: a coordinator creates a workflow that analyses every Python file of a
    directory in parallel and merges the findings into a report; worker processes speaking MCP claim
    the tasks, lock the file they share, message the coordinator and publish events; one crashes
    mid-task, and its lease expires and the task is retried. Needs no Redis."""
    import tempfile

    from rich.console import Console

    from mcp_agentbus.demo.outcome import summary
    from mcp_agentbus.demo.run import run_demo
    from mcp_agentbus.demo.worker import DemoFailed

    if redis_url is not None:
        load_settings(redis_url=redis_url)  # refuse a bad URL before anything starts
    out = out or Path(tempfile.mkdtemp(prefix="agentbus-demo-"))
    console = Console()
    try:
        outcome = anyio.run(
            partial(
                run_demo,
                root.resolve(),
                out.resolve(),
                workers=workers,
                pace=pace,
                limit=limit,
                redis_url=redis_url,
                console=console,
            )
        )
    except (DemoFailed, AgentBusError, LocalBusError, BaseExceptionGroup) as exc:
        while isinstance(exc, BaseExceptionGroup):  # the first cause, out of the task groups
            exc = exc.exceptions[0]
        fail(f"the demo stopped: {exc or type(exc).__name__} (worker logs: {out / 'logs'})")
    console.print(summary(outcome))
    if outcome.workflow.status != "done":
        sys.exit(1)
