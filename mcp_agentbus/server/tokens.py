"""Bearer tokens for the HTTP transport, kept as SHA-256 hashes in a tokens file.

`agentbus token create --namespace proj --agent 'worker-*' --role worker` prints a new token once and
stores only its hash with a *grant*: the namespace the token works in, the agent ids it may act as (a
glob), and its role (the tools it may call: tool profiles and tool names, comma-separated). An HTTP
server whose tokens file exists (``AGENTBUS_TOKENS_FILE``, default ``~/.config/agentbus/tokens.json``)
requires a valid token on every request (``auth.py``), and re-reads the file when it changes, so tokens
created or revoked meanwhile apply without a restart (a server started without the file serves without
auth until restarted). The file must be writable by its owner alone (`TokensFile.check_private`).
This module does not load the MCP stack, so the ``agentbus token`` commands start fast.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import stat as stat_module
import time
from collections.abc import Callable
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcp_agentbus.ids import NAMESPACE_PATTERN

TOKEN_PREFIX = "abt_"
AGENT_GLOB_PATTERN = r"^[A-Za-z0-9._*?\[\]!-]{1,64}$"
_GLOB_CHARS = re.compile(r"[*?\[]")
_NEVER, _UNREADABLE = object(), object()  # the file not looked at yet; the file could not be looked at
SETTLED_NS = 2_000_000_000  # a file's mtime this old cannot hide a later write of the same size

logger = logging.getLogger(__name__)


class Grant(BaseModel):
    """What one token allows. The token itself is never stored, only `sha256` of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    sha256: str
    namespace: str = Field(pattern=NAMESPACE_PATTERN)
    agent: str = Field(pattern=AGENT_GLOB_PATTERN, description="The agent ids it may act as (a glob).")
    role: str = Field(min_length=1, description="A tool profile or a comma list of tools.")
    created_at: str
    note: str = ""

    def may_act_as(self, agent: str) -> bool:
        return fnmatchcase(agent, self.agent)

    @property
    def default_agent(self) -> str | None:
        """The agent a call that names none acts as: the glob itself when it names one agent."""
        return None if _GLOB_CHARS.search(self.agent) else self.agent


class _TokensFileModel(BaseModel):
    tokens: list[Grant] = []


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokensFile:
    """The tokens file: a JSON document only its owner can write, replaced atomically on every change.

    A running server looks at it again (one ``stat``) on every request, before each push and while a
    call waits, and ends what a grant no longer covers (`watch`). A file that cannot be read or
    parsed while serving keeps the grants read before (logged once), so a half-written file neither
    locks everyone out nor lets anyone new in; a missing file has no grants: every token is refused."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: object = _NEVER  # (inode, mtime_ns, size) of the last look; None: no file
        self._text: object = _NEVER  # the bytes last read (None: no file)
        self._by_hash: dict[str, Grant] = {}
        self._watchers: dict[object, tuple[Grant, Callable[[], None]]] = {}
        self._on_reload: list[Callable[[], None]] = []

    def exists(self) -> bool:
        return self.path.exists()

    def grants(self) -> list[Grant]:
        """Every grant in the file (none when it does not exist); a damaged file raises ValueError."""
        try:
            return self._parse(self.path.read_bytes())
        except FileNotFoundError:
            return []

    def _parse(self, text: bytes) -> list[Grant]:
        try:
            return _TokensFileModel.model_validate_json(text).tokens
        except ValidationError as exc:
            raise ValueError(
                f"the tokens file {self.path} is damaged ({exc.error_count()} problem(s), first: "
                f"{exc.errors(include_url=False)[0]['msg']}); fix it or move it away and create tokens again"
            ) from exc

    def check_private(self) -> None:
        """Refuse (ValueError) a file, or a directory holding it, that someone else could change:
        whoever can write it can grant themselves any agent. Like ssh with a loose key."""
        me = os.getuid()
        for path in dict.fromkeys((self.path, self.path.resolve())):
            for each, kind in ((path, "file"), (path.parent, "directory")):
                stat = each.stat()
                if stat.st_uid not in (me, 0):
                    raise ValueError(
                        f"refusing the tokens file: the {kind} {each} belongs to uid {stat.st_uid}, not to "
                        f"you (uid {me}) or root, so its owner could grant themselves any agent. Run "
                        f"`chown {me} {each}` (or use a tokens file of your own)."
                    )
                loose = stat.st_mode & (stat_module.S_IWGRP | stat_module.S_IWOTH)
                sticky = kind == "directory" and stat.st_mode & stat_module.S_ISVTX
                if loose and not sticky and not _read_only(each):
                    raise ValueError(
                        f"refusing the tokens file: the {kind} {each} is writable by others "
                        f"(mode {stat_module.S_IMODE(stat.st_mode):o}), so they could grant themselves "
                        f"any agent. Run `chmod go-w {each}`."
                    )

    def refresh(self) -> None:
        """Read the file again if it changed since the last look; never raises. The look is one
        ``stat``; the file is read only when that changed, or when it was written so recently that a
        change within the file system's timestamp granularity could hide behind an equal ``stat``."""
        try:
            stat = self.path.stat()
            seen: tuple[int, int, int] | None = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            settled = time.time_ns() - stat.st_mtime_ns > SETTLED_NS
            if seen == self._seen and settled:
                return
            text: bytes | None = self.path.read_bytes()
        except FileNotFoundError:
            seen, text = None, None
        except OSError as exc:  # e.g. the directory became unreadable: keep what was read
            if self._seen is not _UNREADABLE:
                logger.warning("cannot read the tokens file %s (%s); keeping the grants read before",
                               self.path, exc)  # fmt: skip
                self._seen = _UNREADABLE
            return
        self._seen = seen
        if text == self._text:
            return
        self._text = text
        try:
            grants = [] if text is None else self._parse(text)
        except ValueError as exc:
            logger.warning(
                "%s. Keeping the %d token(s) read before until it is fixed.", exc, len(self._by_hash)
            )
            return
        self._by_hash = {grant.sha256: grant for grant in grants}
        gone = [on_gone for grant, on_gone in self._watchers.values() if not self._covers(grant)]
        self._watchers = {k: (g, f) for k, (g, f) in self._watchers.items() if self._covers(g)}
        for callback in [*self._on_reload, *gone]:
            try:
                callback()
            except Exception:  # one failing reaction must not keep the others from ending things
                logger.exception("reacting to a change of the tokens file %s failed", self.path)

    def find(self, token: str) -> Grant | None:
        """The grant of `token`, from the file as it is now (re-read only when it changed)."""
        self.refresh()
        return self._by_hash.get(hash_token(token))

    def holds(self, grant: Grant) -> bool:
        """Whether the file as it is now still grants what `grant` did."""
        self.refresh()
        return self._covers(grant)

    def holds_id(self, token_id: str) -> bool:
        """Whether a token with this id is in the file as last read."""
        return any(grant.id == token_id for grant in self._by_hash.values())

    def watch(self, grant: Grant, on_gone: Callable[[], None]) -> Callable[[], None]:
        """Call `on_gone` once, when the file no longer grants what `grant` did (the token revoked,
        or its namespace, agents or role changed). Returns the call that stops watching."""
        key = object()
        self._watchers[key] = (grant, on_gone)
        return lambda: self._watchers.pop(key, None) and None

    def on_reload(self, callback: Callable[[], None]) -> None:
        """Call `callback` after every successful re-read of a changed file."""
        self._on_reload.append(callback)

    def _covers(self, grant: Grant) -> bool:
        now = self._by_hash.get(grant.sha256)
        return now is not None and (now.namespace, now.agent, now.role) == (
            grant.namespace,
            grant.agent,
            grant.role,
        )

    def create(self, *, namespace: str, agent: str, role: str, note: str = "") -> tuple[str, Grant]:
        """A new token and its grant, saved; the token is returned only here."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = hash_token(token)
        grant = Grant(
            id=f"tok-{digest[:10]}",
            sha256=digest,
            namespace=namespace,
            agent=agent,
            role=role,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            note=note,
        )
        self._save([*self.grants(), grant])
        return token, grant

    def revoke(self, token_id: str) -> Grant | None:
        """Remove the grant with this id; None when there is none."""
        grants = self.grants()
        gone = next((g for g in grants if g.id == token_id), None)
        if gone is not None:
            self._save([g for g in grants if g.id != token_id])
        return gone

    def _save(self, grants: list[Grant]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = json.dumps(_TokensFileModel(tokens=grants).model_dump(mode="json"), indent=2) + "\n"
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(temporary, self.path)  # readers see the old file or the new one, never half of one


def _read_only(path: Path) -> bool:
    """Whether `path` is on a read-only mount (such as a container's mounted secret): its mode bits
    then let no one change it."""
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
