"""Bearer tokens for the HTTP transport, kept as SHA-256 hashes in a tokens file.

`agentbus token create --namespace proj --agent 'worker-*' --role worker` prints a new token once and
stores only its hash with a *grant*: the namespace the token works in, the agent ids it may act as (a
glob), and its role (the tools it may call: tool profiles and tool names, comma-separated). An HTTP
server whose tokens file exists (``AGENTBUS_TOKENS_FILE``, default ``~/.config/agentbus/tokens.json``)
requires a valid token on every request (``auth.py``), and re-reads the file when it changes, so tokens
created or revoked meanwhile apply without a restart. This module does not load the MCP stack, so the
``agentbus token`` commands start fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcp_agentbus.keys import NAMESPACE_PATTERN

TOKEN_PREFIX = "abt_"
AGENT_GLOB_PATTERN = r"^[A-Za-z0-9._*?\[\]!-]{1,64}$"
_GLOB_CHARS = re.compile(r"[*?\[]")


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
    """The tokens file: a JSON document only its owner can read, replaced atomically on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None  # (inode, mtime_ns, size) of the last load
        self._by_hash: dict[str, Grant] = {}

    def exists(self) -> bool:
        return self.path.exists()

    def grants(self) -> list[Grant]:
        """Every grant in the file (none when it does not exist); a damaged file raises ValueError."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        try:
            return _TokensFileModel.model_validate_json(text).tokens
        except ValidationError as exc:
            raise ValueError(
                f"the tokens file {self.path} is damaged ({exc.error_count()} problem(s), first: "
                f"{exc.errors(include_url=False)[0]['msg']}); fix it or move it away and create tokens again"
            ) from exc

    def find(self, token: str) -> Grant | None:
        """The grant of `token`, from the file as it is now (re-read only when it changed)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # every save is a new file (os.replace)
        if seen != self._seen:
            self._by_hash = {grant.sha256: grant for grant in self.grants()}
            self._seen = seen
        return self._by_hash.get(hash_token(token))

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
