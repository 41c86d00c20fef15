"""The ``agentbus`` command. On stdio, stdout carries only the protocol; everything else goes to stderr."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import click
from pydantic import ValidationError

from mcp_agentbus.errors import AgentBusError
from mcp_agentbus.redis.connection import close, connect, redact
from mcp_agentbus.redis.local import LOCAL_SCHEME, LocalBus, LocalBusError, looking_url
from mcp_agentbus.server.tokens import TokensFile
from mcp_agentbus.settings import Settings

if TYPE_CHECKING:
    from mcp_agentbus.cli.views import Snapshot
    from mcp_agentbus.core.bus import AgentBus


def fail(message: str) -> NoReturn:
    click.echo(f"agentbus: {message}", err=True)
    sys.exit(2)


def load_settings(**flags: Any) -> Settings:
    """Settings from AGENTBUS_* with the given (non-None) flags on top; bad values end the command."""
    try:
        return Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        fail(f"invalid settings ({problems}). Check the AGENTBUS_* environment and the flags.")


async def _ping(url: str) -> None:
    client = connect(url)
    try:
        with anyio.fail_after(5):
            await client.ping()
    finally:
        await close(client)


def check_redis(settings: Settings) -> None:
    """Exit with a clear message (what URL, what to do) when Redis cannot be reached."""
    try:
        anyio.run(_ping, settings.redis_url)
    except Exception as exc:  # any failure here means the same thing to the user
        why = str(exc).rstrip(".") or type(exc).__name__
        fail(
            f"cannot reach Redis at {redact(settings.redis_url)} ({why}).\n"
            "  Start a Redis server (for example `redis-server`), point AGENTBUS_REDIS_URL or --redis-url\n"
            "  at a running one, or use --redis-url memory:// for an embedded bus inside this one process."
        )


def use_local_bus(settings: Settings) -> Settings:
    """With ``local://``, the settings for the user's local bus (started if need be): its socket URL."""
    if not settings.redis_url.startswith(LOCAL_SCHEME):
        return settings
    local = LocalBus.from_url(settings.redis_url)
    try:
        url, started = local.ensure()
    except LocalBusError as exc:
        fail(str(exc))
    if started:
        click.echo(
            f"agentbus: started the local bus in {local.directory} (stop: agentbus local stop)", err=True
        )
    return settings.model_copy(update={"redis_url": url})


@click.group()
@click.version_option(package_name="mcp-agentbus")
def main() -> None:
    """mcp-agentbus: a coordination bus for LLM agents on one Redis, spoken over MCP."""


def http_auth(settings: Settings, host: str, unsafe_no_auth: bool) -> TokensFile | None:
    """The tokens an HTTP server requires: those of the tokens file when it exists. Without them it
    listens on loopback only, unless the user insists."""
    from mcp_agentbus.server.http import is_loopback

    tokens = TokensFile(settings.tokens_file)
    if unsafe_no_auth:
        click.echo(
            f"agentbus: WARNING: --unsafe-no-auth: no tokens are checked; anyone who can reach {host} "
            "can act as any agent in any way.",
            err=True,
        )
        return None
    if tokens.exists():
        try:
            tokens.check_private()
            tokens.grants()
        except (ValueError, OSError) as exc:
            fail(str(exc))
        return tokens
    if not is_loopback(host):
        fail(
            f"refusing to listen on {host} without authentication: anyone who can reach it could act "
            "as any agent.\n  Create a token first (`agentbus token create --agent 'worker-*'`), listen on "
            "127.0.0.1, or pass --unsafe-no-auth if this network is truly private."
        )
    return None


@main.command()
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP: address to listen on.")
@click.option("--port", type=int, default=8765, show_default=True, help="HTTP: port to listen on.")
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="HTTP: a Host header to accept besides loopback, as host:port or host:* (repeatable).",
)
@click.option(
    "--stateless",
    is_flag=True,
    help="HTTP: no sessions for legacy clients (no pushes to them); for load balancers without stickiness.",
)
@click.option(
    "--unsafe-no-auth",
    is_flag=True,
    help="HTTP: serve without tokens even on a non-loopback address. Anyone who can reach it can act.",
)
@click.option(
    "--redis-url",
    help="redis://, rediss://, unix://, …; default local:// (your shared local bus); memory:// for one "
    "process [env: AGENTBUS_REDIS_URL]",
)
@click.option("--namespace", help="Swarm/project name; keys live under it [env: AGENTBUS_NAMESPACE]")
@click.option("--agent", help="Agent id used when a call names none [env: AGENTBUS_AGENT]")
@click.option(
    "--tools", help="worker, coordinator, all, tool names, or a comma list of them [env: AGENTBUS_TOOLS]"
)
@click.option(
    "--max-wait", "max_wait_seconds", type=float, help="Cap on wait_seconds [env: AGENTBUS_MAX_WAIT_SECONDS]"
)
@click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="[env: AGENTBUS_LOG_LEVEL]"
)
@click.option(
    "--max-sessions",
    type=int,
    help="HTTP: legacy sessions open at once in this process [env: AGENTBUS_MAX_SESSIONS; 1000]",
)
@click.option(
    "--max-sessions-per-token",
    type=int,
    help="HTTP: legacy sessions one token may hold [env: AGENTBUS_MAX_SESSIONS_PER_TOKEN; 100]",
)
@click.option(
    "--session-idle",
    "session_idle_seconds",
    type=float,
    help="HTTP: seconds after which an unused legacy session ends [env: AGENTBUS_SESSION_IDLE_SECONDS; 300]",
)
def serve(
    transport: str,
    host: str,
    port: int,
    allowed_hosts: tuple[str, ...],
    stateless: bool,
    unsafe_no_auth: bool,
    **flags: Any,
) -> None:
    """Run the MCP server: stdio (for Claude Code, Claude Desktop and agent runners) or streamable
    HTTP at http://HOST:PORT/mcp (for remote agents; /healthz reports Redis reachability)."""
    settings = load_settings(**flags)
    tokens = None
    if transport == "http":
        tokens = http_auth(settings, host, unsafe_no_auth)
    logging.basicConfig(
        stream=sys.stderr, level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.redis_url.startswith("memory://"):
        click.echo(
            "agentbus: memory:// keeps the bus inside this process; other agentbus processes will not see "
            "it (leave AGENTBUS_REDIS_URL unset for the shared local bus).",
            err=True,
        )
    else:
        settings = use_local_bus(settings)
        check_redis(settings)
    from mcp_agentbus.server.app import build_server  # the MCP stack loads only for commands that serve

    try:
        if transport == "http":
            from mcp_agentbus.server.http import build_app
            from mcp_agentbus.server.http import serve as serve_http

            app = build_app(settings, allowed_hosts=allowed_hosts, stateless=stateless, tokens=tokens)
        else:
            server = build_server(settings)
    except ValueError as exc:
        fail(str(exc))
    if transport == "http":
        auth = f"bearer tokens from {tokens.path}" if tokens else "no auth"
        if tokens is None and not unsafe_no_auth:
            auth += f" until restarted after `agentbus token create` makes {settings.tokens_file}"
        click.echo(f"agentbus: serving MCP at http://{host}:{port}/mcp ({auth}; health: /healthz)", err=True)
        serve_http(app, host, port, settings)
    else:
        server.run("stdio")


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
    default=Path(__file__).parent,
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

    from mcp_agentbus.demo.run import run_demo, summary
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


@main.command()
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
        Console().print(render(snap))


@main.command()
@view_options
@click.option("--interval", type=click.FloatRange(0.1, 60), default=1.0, show_default=True, help="Seconds.")
def watch(workflow_id: str | None, interval: float, **flags: Any) -> None:
    """`status`, live, until Ctrl-C."""
    from rich.live import Live
    from rich.text import Text

    from mcp_agentbus.cli.views import render, take

    settings = view_settings(flags)

    async def follow() -> None:
        async with looking(settings) as bus:
            with Live(render(await take(bus, workflow_id=workflow_id)), auto_refresh=False) as live:
                while True:
                    await anyio.sleep(interval)
                    try:
                        view = render(await take(bus, workflow_id=workflow_id))
                    except AgentBusError as exc:  # Redis went away: say so and keep trying
                        view = Text(f"{exc} (retrying every {interval:g} s)", style="bold red")
                    live.update(view, refresh=True)

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(follow)


@main.group()
def token() -> None:
    """Bearer tokens for the HTTP transport (stored hashed in AGENTBUS_TOKENS_FILE, default
    ~/.config/agentbus/tokens.json). While that file exists, HTTP requires a token."""


_tokens_file_option = click.option(
    "--tokens-file", type=click.Path(dir_okay=False, path_type=Path), help="[env: AGENTBUS_TOKENS_FILE]"
)


def _tokens(tokens_file: Path | None) -> TokensFile:
    return TokensFile(load_settings(tokens_file=tokens_file).tokens_file)


@token.command("create")
@click.option(
    "--agent", required=True, help="Agent ids the token may act as: one id, or a glob such as 'worker-*'."
)
@click.option("--namespace", help="The namespace it works in [default: AGENTBUS_NAMESPACE or 'default'].")
@click.option(
    "--role",
    default="worker",
    show_default=True,
    help="Tools it may call: worker, coordinator, all, tool names, or a comma list of them.",
)
@click.option("--note", default="", help="What it is for (shown by `token list`).")
@_tokens_file_option
def token_create(agent: str, namespace: str | None, role: str, note: str, tokens_file: Path | None) -> None:
    """Create a token: printed once on stdout; only its hash is kept."""
    from mcp_agentbus.server.tools import select_tools

    try:
        select_tools(role)
    except ValueError as exc:
        fail(f"--role {exc}")
    settings = load_settings(namespace=namespace, tokens_file=tokens_file)
    tokens = TokensFile(settings.tokens_file)
    new_file = not tokens.exists()
    try:
        secret, grant = tokens.create(namespace=settings.namespace, agent=agent, role=role, note=note)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    if new_file:
        click.echo(
            f"agentbus: {tokens.path} is new: HTTP servers started before it existed serve without auth "
            "until restarted; restart them to require tokens.",
            err=True,
        )
    click.echo(
        f"agentbus: created {grant.id} (namespace {grant.namespace}, agents {grant.agent!r}, role "
        f"{grant.role}) in {tokens.path}. The token is shown only now:",
        err=True,
    )
    click.echo(secret)


@token.command("list")
@_tokens_file_option
def token_list(tokens_file: Path | None) -> None:
    """The tokens there are (never the tokens themselves)."""
    tokens = _tokens(tokens_file)
    try:
        grants = tokens.grants()
    except ValueError as exc:
        fail(str(exc))
    if not grants:
        click.echo(f"no tokens in {tokens.path}", err=True)
    for g in grants:
        click.echo(
            f"{g.id}  namespace={g.namespace}  agent={g.agent}  role={g.role}  created={g.created_at}"
            + (f"  note={g.note}" if g.note else "")
        )


@token.command("revoke")
@click.argument("token_id")
@_tokens_file_option
def token_revoke(token_id: str, tokens_file: Path | None) -> None:
    """Remove a token by its id (from `token list`); servers refuse it from their next request."""
    tokens = _tokens(tokens_file)
    try:
        gone = tokens.revoke(token_id)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    if gone is None:
        fail(f"there is no token {token_id} in {tokens.path} (see `agentbus token list`)")
    click.echo(f"agentbus: revoked {token_id}", err=True)


@main.group()
def local() -> None:
    """The local bus: one redis-server for all your agentbus processes, on a unix socket in
    ~/.local/state/agentbus with AOF on. Used when no Redis is configured (AGENTBUS_REDIS_URL=local://)."""


_local_url_option = click.option(
    "--redis-url",
    default=None,
    help="local:// or local:///dir (default: the user's state directory) [env: AGENTBUS_REDIS_URL]",
)


def _local_bus(redis_url: str | None) -> LocalBus:
    url = redis_url or load_settings().redis_url
    if not url.startswith(LOCAL_SCHEME):
        url = LOCAL_SCHEME  # AGENTBUS_REDIS_URL names another Redis; the local bus is still the user's
    return LocalBus.from_url(url)


@local.command("status")
@_local_url_option
def local_status(redis_url: str | None) -> None:
    """Whether the local bus runs, and its socket, version, clients, memory and persistence.
    Exits 1 when it is not running."""
    bus = _local_bus(redis_url)
    info = bus.info()
    if info is None:
        click.echo(f"not running ({bus.directory}); any `agentbus serve` without a Redis URL starts it")
        sys.exit(1)
    keys = sum(v.get("keys", 0) for k, v in info.items() if k.startswith("db") and isinstance(v, dict))
    aof = "AOF" if str(info.get("aof_enabled")) == "1" else "no AOF"
    click.echo(
        f"running: {bus.url}\n"
        f"  redis {info.get('redis_version')}, pid {info.get('process_id')}, "
        f"up {info.get('uptime_in_seconds')} s\n"
        f"  clients: {int(info.get('connected_clients', 1)) - 1} besides this one\n"
        f"  memory: {info.get('used_memory_human')}, keys: {keys}\n"
        f"  persistence: {aof} in {bus.directory}\n"
        f"  log: {bus.log}"
    )


@local.command("start")
@_local_url_option
def local_start(redis_url: str | None) -> None:
    """Start the local bus (agentbus serve also does this when it needs it)."""
    bus = _local_bus(redis_url)
    try:
        url, started = bus.ensure()
    except LocalBusError as exc:
        fail(str(exc))
    click.echo(f"{'started' if started else 'already running'}: {url}")


@local.command("stop")
@_local_url_option
def local_stop(redis_url: str | None) -> None:
    """Stop the local bus; its data stays on disk (AOF) for the next start. Servers still connected
    get backend_unavailable until it runs again."""
    bus = _local_bus(redis_url)
    info = bus.info()
    if info is None or not bus.stop():
        click.echo(f"not running ({bus.directory})")
        return
    others = int(info.get("connected_clients", 1)) - 1
    click.echo(
        f"stopped the local bus in {bus.directory}"
        + (f" ({others} clients were connected)" if others else "")
    )
