"""`agentbus guard`: locks that reach git. Its pre-commit hook refuses a commit whose staged paths lie
under a lock another agent holds (hierarchically, as the locks do: a held ``src/auth/`` covers
``src/auth/login.py``), naming each path, the lock, its holder and its expiry; the holder's own commits
(``AGENTBUS_AGENT``) pass.

The check runs on every commit, so like `agentbus hook` it is quick and never in the way: it never
imports the MCP stack, gives Redis one short timeout, never starts the local bus, and when it cannot
look (the bus unreachable or not running, not a repository, any error) it warns on one line of stderr
and lets the commit through.
"""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import click
from pydantic import ValidationError

from mcp_agentbus.cli.common import fail
from mcp_agentbus.redis.connection import close, connect
from mcp_agentbus.redis.keys import Keys
from mcp_agentbus.redis.local import looking_url
from mcp_agentbus.settings import Settings

TIMEOUT = 2.0  # seconds the whole look at the bus may take; past it the commit passes with a warning
GIT_TIMEOUT = 30.0  # seconds a git command may take
BELOW_MAX = 100  # lock names below one staged path looked at (a path with locks below it: a submodule)
NAMED_MAX = 50  # staged paths named in a refusal; the rest are counted
MARK = "# agentbus guard: refuses commits touching paths that other agents have locked on the bus."
BACKUP = "pre-commit.before-agentbus"  # where `install --force` keeps the hook it replaces


@dataclass(frozen=True)
class Blocked:
    path: str  # the staged path
    resource: str  # the lock over it
    holder: str
    expires_ms: int


def covering(path: str) -> list[str]:
    """The lock names that hold `path` exactly or from above, as ``overlapping`` in
    ``redis/lua/include/locks.lua`` names them: the path with and without a trailing '/', and every
    directory above it in both forms ('src/' and 'src')."""
    path = path.removesuffix("/")
    names = [path, path + "/"]
    i = path.find("/")
    while i != -1:
        names.append(path[: i + 1])
        if i > 0:
            names.append(path[:i])
        i = path.find("/", i + 1)
    return names


async def blocking(
    redis_url: str, namespace: str, agent: str | None, paths: list[str]
) -> tuple[list[Blocked], int]:
    """The live locks of agents other than `agent` over any of `paths` (exactly, from above, or below
    them), one entry per (path, lock), and Redis's time now in milliseconds."""
    keys = Keys(namespace)
    names = sorted({name for path in paths for name in covering(path)})
    redis = connect(redis_url, timeout=TIMEOUT)
    try:
        with anyio.fail_after(TIMEOUT):
            seconds, micros = await redis.time()
            now_ms = seconds * 1000 + micros // 1000
            async with redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hmget(keys.lock(name), "owner", "expires")
                for path in paths:  # bytes: the range ends at byte 0xff, past every UTF-8 name
                    below = path.removesuffix("/").encode() + b"/"
                    pipe.zrangebylex(keys.lock_names, b"[" + below, b"[" + below + b"\xff", 0, BELOW_MAX)
                replies = await pipe.execute()
            held = dict(zip(names, replies[: len(names)], strict=True))
            under = dict(zip(paths, replies[len(names) :], strict=True))
            more = sorted({name for found in under.values() for name in found} - held.keys())
            async with redis.pipeline(transaction=False) as pipe:
                for name in more:
                    pipe.hmget(keys.lock(name), "owner", "expires")
                held.update(zip(more, await pipe.execute(), strict=True))
    finally:
        await close(redis)

    def live(name: str) -> bool:
        owner, expires = held[name]
        return owner is not None and owner != agent and int(expires) > now_ms

    found = [
        Blocked(path, name, held[name][0], int(held[name][1]))
        for path in paths
        for name in [*covering(path), *under[path]]
        if live(name)
    ]
    return list(dict.fromkeys(found)), now_ms  # a path's own name can come twice (as 'x/' and below)


def local_time(ms: int) -> str:
    when = datetime.fromtimestamp(ms / 1000).astimezone()
    today = datetime.now().astimezone().date()
    return when.strftime("%H:%M:%S %Z" if when.date() == today else "%Y-%m-%d %H:%M:%S %Z")


def refusal(blocked: list[Blocked], now_ms: int, agent: str | None) -> str:
    """What a refused commit says: each path, the lock over it, its holder and expiry, what to do."""
    paths = {b.path for b in blocked}
    lines = [f"agentbus guard: commit refused: {len(paths)} staged path(s) are locked by other agents."]
    for b in blocked[:NAMED_MAX]:
        left = max(0, math.ceil((b.expires_ms - now_ms) / 1000))
        lines.append(
            f"  {b.path}: lock {b.resource} held by {b.holder}, expires {local_time(b.expires_ms)} "
            f"(in {left} s)"
        )
    if len(blocked) > NAMED_MAX:
        lines.append(f"  … and {len(blocked) - NAMED_MAX} more")
    you = f"AGENTBUS_AGENT is {agent!r}" if agent else "AGENTBUS_AGENT is not set"
    lines.append(
        "Wait until the holder releases the lock or it expires, or ask the holder (send_message) to "
        "release it; unstage those paths (git restore --staged PATH) to commit the rest now. If you "
        f"hold the lock, commit as that agent ({you})."
    )
    return "\n".join(lines)


def git(*args: str, cwd: Path | None = None) -> bytes:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, check=True, timeout=GIT_TIMEOUT
    ).stdout


def staged_paths() -> list[str]:
    """The paths the commit changes, from the repository root; a rename as both its paths. In Unicode
    NFC, as lock names are (core/locks.canonical)."""
    out = git("-c", "diff.relative=false", "diff", "--cached", "--name-only", "--no-renames", "-z")
    return [unicodedata.normalize("NFC", p.decode(errors="replace")) for p in out.split(b"\0") if p]


def hook_file(repo: Path) -> Path:
    """The repository's pre-commit hook (in ``core.hooksPath`` when that is set)."""
    try:
        where = git("rev-parse", "--git-path", "hooks/pre-commit", cwd=repo).decode().strip()
    except (OSError, subprocess.SubprocessError) as exc:
        why = exc.stderr.decode().strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        fail(f"{repo} is not in a git repository ({why}). Pass --repo with a repository's directory.")
    return (repo / where).absolute()


def hook_script() -> str:
    """The hook: this interpreter (absolute: a hook runs without the venv on PATH) runs the check, with
    -P so that a directory named like the package in the repository is not imported instead; if the
    interpreter is gone, it warns and lets the commit through."""
    python = shlex.quote(os.path.abspath(sys.executable))
    return (
        f"#!/bin/sh\n{MARK}\n# `agentbus guard uninstall` removes it.\n"
        f"if [ -x {python} ]; then exec {python} -P -m mcp_agentbus guard check; fi\n"
        f'echo "agentbus guard: {python} is gone; commit not checked (run agentbus guard install)" >&2\n'
    )


def ours(hook: Path) -> bool:
    return MARK in hook.read_text(errors="replace")


@click.group()
def guard() -> None:
    """Locks that reach git: a pre-commit hook that refuses a commit touching a path another agent has
    locked on the bus (naming the holder and the expiry), and lets the holder's own commits through."""


REPO = click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    help="The repository [default: the current directory].",
)


@guard.command()
@REPO
@click.option("--force", is_flag=True, help=f"Replace a pre-commit hook of another tool (kept as {BACKUP}).")
def install(repo: Path, force: bool) -> None:
    """Install the pre-commit hook (in core.hooksPath if set). It runs `agentbus guard check` with this
    Python, with the committer's AGENTBUS_* settings (AGENTBUS_AGENT is the committer)."""
    hook, script = hook_file(repo), hook_script()
    if hook.exists() and not ours(hook):
        if not force:
            fail(f"{hook} is another tool's hook; left unchanged. Run again with --force to replace it.")
        hook.replace(hook.with_name(BACKUP))
        click.echo(f"agentbus guard: kept the replaced hook as {hook.with_name(BACKUP)}")
    if hook.exists() and hook.read_text() == script:
        click.echo(f"agentbus guard: already installed in {hook}")
        return
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(script)
    hook.chmod(0o755)
    click.echo(f"agentbus guard: installed {hook}")


@guard.command()
@REPO
def uninstall(repo: Path) -> None:
    """Remove the pre-commit hook `install` put there (never another tool's)."""
    hook = hook_file(repo)
    if not hook.exists():
        click.echo(f"agentbus guard: no pre-commit hook in {hook.parent}; nothing to remove")
    elif not ours(hook):
        fail(f"{hook} is another tool's hook, not agentbus guard's; left unchanged.")
    else:
        hook.unlink()
        click.echo(f"agentbus guard: removed {hook}")
        if hook.with_name(BACKUP).exists():
            hook.with_name(BACKUP).replace(hook)
            click.echo(f"agentbus guard: restored the hook it had replaced ({hook})")


@guard.command()
@click.option("--agent", help="The committing agent [env: AGENTBUS_AGENT].")
@click.option("--namespace", help="[env: AGENTBUS_NAMESPACE]")
@click.option("--redis-url", help="[env: AGENTBUS_REDIS_URL; default: your local bus]")
def check(**flags: Any) -> None:
    """Refuse (exit 1) if a staged path is locked by an agent other than AGENTBUS_AGENT. The hook runs
    it; when it cannot look at the bus, it warns and exits 0: a bus that is down never blocks a commit."""

    def warn(why: str) -> None:
        click.echo(f"agentbus guard: {why}; commit not checked against the bus's locks", err=True)

    try:
        settings = Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        return warn(f"invalid settings ({exc.errors(include_url=False)[0]['msg']})")
    try:
        paths = staged_paths()
    except (OSError, subprocess.SubprocessError) as exc:
        return warn(f"could not read the staged paths ({exc or type(exc).__name__})")
    if not paths:
        return
    if settings.redis_url.startswith("memory://"):
        return warn("memory:// is a bus inside one process, none to ask (set AGENTBUS_REDIS_URL)")
    url = looking_url(settings.redis_url)
    if url is None:
        return warn("the local bus is not running (start it, or set AGENTBUS_REDIS_URL to your bus)")
    try:
        blocked, now_ms = anyio.run(blocking, url, settings.namespace, settings.agent, paths)
    except Exception as exc:  # whatever went wrong, a commit is never blocked by it
        return warn(f"could not look at the bus ({str(exc).rstrip('.') or type(exc).__name__})")
    if blocked:
        click.echo(refusal(blocked, now_ms, settings.agent), err=True)
        sys.exit(1)
