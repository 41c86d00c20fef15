"""`agentbus guard`: locks that reach git. Real repositories (`git init` in a temporary directory), real
commits through `git commit` and the installed hook, against the session's redis-server; the lookup on
its own also on the embedded store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ALSO_ON_CLUSTER, redis_ms, until_redis_time

from mcp_agentbus.cli.guard import BACKUP, MARK, blocking, covering
from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio
MODULE = [sys.executable, "-m", "mcp_agentbus"]
TIMEOUT = 60
REAL = pytest.mark.parametrize("redis_url", ["redis"], indirect=True)  # the hook is another process
FOREIGN = "#!/bin/sh\n# another tool's hook\nexit 0\n"
LINE = r"^  {path}: lock {lock} held by {who}, expires \d\d:\d\d:\d\d \S+ \(in \d+ s\)$"  # one blocked path


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`args` in `cwd`, with none of the caller's AGENTBUS_* and no user or system git config."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTBUS_", "GIT_"))}
    isolated = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(
        args, cwd=cwd, env={**base, **isolated, **env}, capture_output=True, text=True, timeout=TIMEOUT
    )


def git(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run(["git", *args], repo, **env)


def agentbus(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run([*MODULE, *args], repo, **env)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit and the guard installed."""
    root = tmp_path / "project"
    root.mkdir()
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.name", "Tester"],
        ["config", "user.email", "tester@example.com"],
        ["config", "commit.gpgsign", "false"],
    ):
        assert git(root, *args).returncode == 0
    (root / "README.md").write_text("hello\n")
    assert git(root, "add", "README.md").returncode == 0
    assert git(root, "commit", "-q", "-m", "start").returncode == 0
    done = agentbus(root, "guard", "install")
    assert done.returncode == 0, done.stderr
    return root


def commit(
    repo: Path, settings: Settings | None, agent: str | None, *files: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Change `files`, stage them and `git commit` as `agent`, on the bus of `settings`."""
    for name in files:
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"changed {path.stat().st_size if path.exists() else 0}\n")
    assert git(repo, "add", *files).returncode == 0
    if settings is not None:
        env = {"AGENTBUS_REDIS_URL": settings.redis_url, "AGENTBUS_NAMESPACE": settings.namespace, **env}
    if agent is not None:
        env["AGENTBUS_AGENT"] = agent
    return git(repo, "commit", "-q", "-m", f"change {' '.join(files)}", **env)


def commits(repo: Path) -> int:
    return int(git(repo, "rev-list", "--count", "HEAD").stdout)


@REAL
async def test_a_commit_touching_a_file_another_agent_locked_is_refused_naming_holder_and_expiry(
    bus: AgentBus, settings: Settings, repo: Path
) -> None:
    await bus.locks.acquire("alice", "src/app.py", ttl_seconds=90)
    done = commit(repo, settings, "bob", "src/app.py", "docs/notes.md")
    assert done.returncode == 1
    line = LINE.format(path=r"src/app\.py", lock=r"src/app\.py", who="alice")
    assert re.search(line, done.stderr, re.M), done.stderr
    assert re.search(r"\(in (8\d|90) s\)$", done.stderr, re.M), done.stderr
    assert "docs/notes.md" not in done.stderr
    assert "AGENTBUS_AGENT is 'bob'" in done.stderr
    assert commits(repo) == 1  # nothing was committed; the changes stay staged
    assert git(repo, "diff", "--cached", "--name-only").stdout.split() == ["docs/notes.md", "src/app.py"]


@REAL
async def test_a_file_named_decomposed_is_held_by_its_lock_named_composed(
    bus: AgentBus, settings: Settings, repo: Path
) -> None:
    """As on macOS, the file's name has 'e' and a combining accent; the agent typed the lock's 'é'."""
    await bus.locks.acquire("alice", "docs/caf\u00e9.md", ttl_seconds=90)
    done = commit(repo, settings, "bob", "docs/cafe\u0301.md")
    assert done.returncode == 1, done.stderr
    assert "lock docs/caf\u00e9.md held by alice" in done.stderr


@REAL
async def test_a_commit_under_a_locked_directory_is_refused_for_each_path_below_it(
    bus: AgentBus, settings: Settings, repo: Path
) -> None:
    await bus.locks.acquire("alice", "src/auth/", ttl_seconds=60)
    done = commit(repo, settings, "bob", "src/auth/login.py", "src/auth/oauth/token.py", "src/authz.py")
    assert done.returncode == 1
    named = re.findall(r"^  (\S+): lock src/auth/ held by alice, expires ", done.stderr, re.M)
    assert named == ["src/auth/login.py", "src/auth/oauth/token.py"], done.stderr
    assert "src/authz.py" not in done.stderr
    assert commits(repo) == 1


@REAL
async def test_moving_or_deleting_a_locked_file_is_refused_too(
    bus: AgentBus, settings: Settings, repo: Path
) -> None:
    await bus.locks.acquire("alice", "README.md", ttl_seconds=60)
    assert git(repo, "mv", "README.md", "INTRO.md").returncode == 0
    env = {"AGENTBUS_REDIS_URL": settings.redis_url, "AGENTBUS_NAMESPACE": settings.namespace}
    done = git(repo, "commit", "-q", "-m", "rename", AGENTBUS_AGENT="bob", **env)
    assert done.returncode == 1
    assert "  README.md: lock README.md held by alice" in done.stderr


@REAL
async def test_the_lock_holders_own_commit_passes(bus: AgentBus, settings: Settings, repo: Path) -> None:
    await bus.locks.acquire("alice", "src/auth/", ttl_seconds=60)
    done = commit(repo, settings, "alice", "src/auth/login.py")
    assert (done.returncode, done.stderr) == (0, "")
    assert commits(repo) == 2


@REAL
async def test_a_commit_of_unlocked_paths_passes_while_others_are_locked(
    bus: AgentBus, settings: Settings, repo: Path
) -> None:
    await bus.locks.acquire("alice", "src/auth/", ttl_seconds=60)
    await bus.locks.acquire("alice", "notes", ttl_seconds=60)  # a plain name, not a path
    done = commit(repo, settings, "bob", "src/authz.py", "src/main.py", "docs/notes")
    assert (done.returncode, done.stderr) == (0, "")
    assert commits(repo) == 2


@REAL
async def test_an_expired_lock_does_not_block_even_before_anything_takes_it_back(
    settings: Settings, repo: Path
) -> None:
    async with AgentBus.open(settings, reaper=False) as bus:  # no reaper: the lapsed lock stays written
        await bus.locks.acquire("alice", "src/app.py", ttl_seconds=0.2)
        await until_redis_time(bus, await redis_ms(bus) + 250)
        assert (await bus.locks.held()).locks == []
        assert await bus.store.redis.exists(bus.store.keys.lock("src/app.py"))
        done = commit(repo, settings, "bob", "src/app.py")
    assert (done.returncode, done.stderr) == (0, "")
    assert commits(repo) == 2


@pytest.mark.parametrize(
    ("env", "why"),
    [
        pytest.param({"AGENTBUS_REDIS_URL": "redis://127.0.0.1:1/0"}, "could not look at the bus", id="down"),
        pytest.param({}, "the local bus is not running", id="local-bus-not-running"),
        pytest.param({"AGENTBUS_REDIS_URL": "memory://"}, "memory://", id="memory"),
        pytest.param({"AGENTBUS_NAMESPACE": "not a namespace!"}, "invalid settings", id="bad-settings"),
    ],
)
def test_a_bus_it_cannot_ask_gives_one_warning_and_the_commit_passes(
    repo: Path, env: dict[str, str], why: str
) -> None:
    done = commit(repo, None, "bob", "src/app.py", **env)
    assert done.returncode == 0
    assert done.stderr.count("\n") == 1 and why in done.stderr, done.stderr
    assert done.stderr.endswith("commit not checked against the bus's locks\n")
    assert commits(repo) == 2


def test_install_is_idempotent_and_the_hook_runs_this_python(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    first = hook.read_text()
    again = agentbus(repo, "guard", "install")
    assert again.returncode == 0 and "already installed" in again.stdout
    assert hook.read_text() == first and MARK in first
    assert f"exec {sys.executable} -P -m mcp_agentbus guard check" in first
    assert os.access(hook, os.X_OK)


@REAL
async def test_a_package_of_the_same_name_in_the_repository_does_not_replace_the_check(
    bus: AgentBus, settings: Settings, repo: Path
) -> None:
    (repo / "mcp_agentbus").mkdir()
    (repo / "mcp_agentbus" / "__init__.py").write_text("")
    (repo / "mcp_agentbus" / "__main__.py").write_text("raise SystemExit(0)\n")
    await bus.locks.acquire("alice", "src/", ttl_seconds=60)
    done = commit(repo, settings, "bob", "src/app.py")
    assert done.returncode == 1 and "src/app.py: lock src/ held by alice" in done.stderr


def test_a_hook_whose_python_is_gone_warns_and_lets_the_commit_through(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text(hook.read_text().replace(sys.executable, str(repo / "gone" / "python")))
    done = commit(repo, None, "bob", "src/app.py")
    assert done.returncode == 0 and "python is gone; commit not checked" in done.stderr
    assert commits(repo) == 2


def test_the_readme_shows_a_refusal_as_the_hook_writes_it() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "agentbus guard: commit refused: 1 staged path(s) are locked by other agents.\n" in readme
    assert re.search(LINE.format(path=r"src/auth/login\.py", lock=r"src/auth/", who="alice"), readme, re.M)


def test_install_refuses_another_tools_hook_unless_forced_and_uninstall_puts_it_back(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text(FOREIGN)
    refused = agentbus(repo, "guard", "install")
    assert refused.returncode == 2 and "another tool's hook" in refused.stderr and "--force" in refused.stderr
    assert hook.read_text() == FOREIGN

    forced = agentbus(repo, "guard", "install", "--force")
    assert forced.returncode == 0 and BACKUP in forced.stdout
    assert MARK in hook.read_text() and (hook.parent / BACKUP).read_text() == FOREIGN

    removed = agentbus(repo, "guard", "uninstall")
    assert removed.returncode == 0 and "restored" in removed.stdout
    assert hook.read_text() == FOREIGN and not (hook.parent / BACKUP).exists()


def test_uninstall_removes_only_its_own_hook(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    assert agentbus(repo, "guard", "uninstall").returncode == 0
    assert not hook.exists()
    assert "nothing to remove" in agentbus(repo, "guard", "uninstall").stdout

    hook.write_text(FOREIGN)
    left = agentbus(repo, "guard", "uninstall")
    assert left.returncode == 2 and "another tool's hook" in left.stderr
    assert hook.read_text() == FOREIGN


@REAL
async def test_install_follows_core_hooks_path(bus: AgentBus, settings: Settings, repo: Path) -> None:
    assert agentbus(repo, "guard", "uninstall").returncode == 0
    assert git(repo, "config", "core.hooksPath", "tools/hooks").returncode == 0
    (repo / "sub").mkdir()
    assert agentbus(repo / "sub", "guard", "install").returncode == 0  # from a subdirectory too
    assert MARK in (repo / "tools" / "hooks" / "pre-commit").read_text()
    await bus.locks.acquire("alice", "src/", ttl_seconds=60)
    done = commit(repo, settings, "bob", "src/app.py")
    assert done.returncode == 1 and "src/app.py: lock src/ held by alice" in done.stderr


def test_install_outside_a_repository_says_so(tmp_path: Path) -> None:
    done = agentbus(tmp_path, "guard", "install")
    assert done.returncode == 2 and "not in a git repository" in done.stderr


def test_check_does_not_load_the_mcp_stack(repo: Path) -> None:
    done = run([sys.executable, "-X", "importtime", *MODULE[1:], "guard", "check"], repo)
    assert done.returncode == 0  # nothing staged: nothing to ask
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "mcp_agentbus.cli.guard" in imported
    assert not {name for name in imported if name == "mcp" or name.startswith("mcp.")}


def test_the_names_that_cover_a_path_are_the_locks_hierarchy() -> None:
    assert covering("src/auth/login.py") == [
        "src/auth/login.py",
        "src/auth/login.py/",
        "src/",
        "src",
        "src/auth/",
        "src/auth",
    ]
    assert covering("README.md") == ["README.md", "README.md/"]


@ALSO_ON_CLUSTER
@pytest.mark.parametrize(
    ("resource", "paths", "blocked"),
    [
        ("src/app.py", ["src/app.py"], ["src/app.py"]),
        ("src/auth/", ["src/auth/login.py", "src/auth.py"], ["src/auth/login.py"]),
        ("src/auth", ["src/auth/login.py", "src/authz/x.py"], ["src/auth/login.py"]),
        ("vendor/lib/include/x.h", ["vendor/lib", "vendor/libx"], ["vendor/lib"]),  # a submodule's path
        ("plan", ["plan.md", "docs/plan"], []),
        ("src/ü/é.py", ["src/ü/é.py", "src/ü"], ["src/ü/é.py", "src/ü"]),
    ],
)
async def test_the_lookup_finds_locks_over_below_and_on_each_path(
    bus: AgentBus, settings: Settings, resource: str, paths: list[str], blocked: list[str]
) -> None:
    await bus.locks.acquire("alice", resource, ttl_seconds=60)
    found, now_ms = await blocking(settings.redis_url, settings.namespace, "bob", paths)
    assert [(b.path, b.resource, b.holder) for b in found] == [(p, resource, "alice") for p in blocked]
    assert all(b.expires_ms > now_ms for b in found)
    mine, _ = await blocking(settings.redis_url, settings.namespace, "alice", paths)
    assert mine == []
