"""``agentbus status`` and ``watch``: the bus at a glance, once or live (drawn by ``views.py``)."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

import anyio
import click
from anyio.abc import TaskStatus

from mcp_agentbus.cli.common import fail, load_settings
from mcp_agentbus.errors import AgentBusError
from mcp_agentbus.redis.connection import close, connect
from mcp_agentbus.redis.local import LocalBus, looking_url
from mcp_agentbus.settings import Settings

if TYPE_CHECKING:
    from mcp_agentbus.cli.views import Snapshot
    from mcp_agentbus.core.bus import AgentBus


PIPED_WIDTH = 100_000  # columns `status` draws to when its output is not a terminal: no line is cut


def view_settings(flags: dict[str, Any]) -> Settings:
    """Settings for a command that only looks: it joins the local bus but never starts one."""
    settings = load_settings(**flags)
    if settings.redis_url.startswith("memory://"):
        fail("memory:// is a bus inside one server process; other processes cannot look into it")
    url = looking_url(settings.redis_url)
    if url is None:
        fail(
            f"the local bus is not running ({LocalBus.from_url(settings.redis_url).directory}): nothing has "
            "used it yet, or it was stopped. `agentbus serve` or `agentbus local start` starts it; set "
            "AGENTBUS_REDIS_URL to look at another Redis."
        )
    return settings.model_copy(update={"redis_url": url})


@asynccontextmanager
async def looking(settings: Settings) -> AsyncIterator[AgentBus]:
    """A bus for reading only: no wake-up listener, no reaper."""
    from mcp_agentbus.core.bus import AgentBus

    redis = connect(settings.redis_url)
    try:
        yield AgentBus(redis, settings)
    finally:
        await close(redis)


_view_options = [
    click.option("--redis-url", help="[env: AGENTBUS_REDIS_URL; default: your local bus]"),
    click.option("--namespace", help="[env: AGENTBUS_NAMESPACE]"),
    click.option("--workflow", "workflow_id", help="Also list the tasks of this workflow."),
]


def view_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_view_options):
        command = option(command)
    return command


@click.command()
@view_options
@click.option("--json", "as_json", is_flag=True, help="The whole snapshot as JSON, for scripts.")
def status(workflow_id: str | None, as_json: bool, **flags: Any) -> None:
    """The bus at a glance: agents, workflows with progress, queue depths, held locks, dead tasks and
    the latest events."""
    from rich.console import Console

    from mcp_agentbus.cli.views import render, take

    settings = view_settings(flags)

    async def look() -> Snapshot:
        async with looking(settings) as bus:
            return await take(bus, workflow_id=workflow_id)

    try:
        snap = anyio.run(look)
    except AgentBusError as exc:
        fail(str(exc))
    if as_json:
        click.echo(snap.to_json())
    else:
        # Piped, nothing is cut to a terminal's width: each row stays one line, its JSON whole.
        console = Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH)
        console.print(render(snap))


@click.command()
@view_options
@click.option("--interval", type=click.FloatRange(0.1, 60), default=1.0, show_default=True, help="Seconds.")
def watch(workflow_id: str | None, interval: float, **flags: Any) -> None:
    """`status`, live, until Ctrl-C."""
    with noting(signal.SIGINT, signal.SIGTERM) as noted:
        _watch(workflow_id, interval, flags, noted)


def _watch(workflow_id: str | None, interval: float, flags: dict[str, Any], noted: list[int]) -> None:
    from rich.console import RenderableType
    from rich.live import Live
    from rich.text import Text

    from mcp_agentbus.cli.views import render, take

    settings = view_settings(flags)

    async def follow() -> None:
        async with looking(settings) as bus:
            first = render(await take(bus, workflow_id=workflow_id), fit=True)
            with Live(first, auto_refresh=False) as live:
                while True:
                    await anyio.sleep(interval)
                    view: RenderableType
                    try:
                        view = render(await take(bus, workflow_id=workflow_id), fit=True)
                    except AgentBusError as exc:  # Redis went away: say so and keep trying
                        view = Text(f"{exc} (retrying every {interval:g} s)", style="bold red")
                    live.update(view, refresh=True)

    async def until_stopped() -> None:
        # Ctrl-C cancels a scope, which every later await sees again, rather than asyncio's one-shot
        # task cancellation, which a Redis call cut off mid-reply can swallow (the view then ran on).
        async with anyio.create_task_group() as tg:
            await tg.start(stop_on_signal, tg.cancel_scope)  # in place before the first Redis call
            if noted:  # one came while starting up
                tg.cancel_scope.cancel()
            await follow()

    with contextlib.suppress(KeyboardInterrupt):  # a Ctrl-C as the view winds down
        anyio.run(until_stopped)


@contextlib.contextmanager
def noting(*signals: signal.Signals) -> Iterator[list[int]]:
    """While inside, these signals are only noted in the list given, never raised. Python's own Ctrl-C
    handler raises KeyboardInterrupt wherever the interpreter is, and in a weakref callback (importlib
    runs one as each import ends) Python prints "Exception ignored" and drops it: a Ctrl-C during
    `watch`'s imports was lost and the view ran on. Noting also keeps asyncio from putting in its own
    Ctrl-C handler (a one-shot task cancellation) while the loop starts."""
    noted: list[int] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        noted.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in signals}
    try:
        yield noted
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(sig, handler)


async def stop_on_signal(
    scope: anyio.CancelScope, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Cancel `scope` at the first SIGINT (Ctrl-C) or SIGTERM."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            scope.cancel()
            return
