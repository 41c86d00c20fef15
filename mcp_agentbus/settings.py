"""One typed settings object, filled from ``AGENTBUS_*`` environment variables and CLI flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mcp_agentbus.ids import AGENT_PATTERN, NAMESPACE_PATTERN

# The Redis URLs agentbus knows (redis/connection.py makes the clients).
SCHEMES = (
    "redis://",
    "rediss://",
    "unix://",
    "redis+sentinel://",
    "rediss+sentinel://",
    "redis+cluster://",
    "rediss+cluster://",
    "local://",
    "memory://",
)
DEFAULT_TIMEOUT = 5.0  # seconds one command may take before the call fails (AGENTBUS_REDIS_TIMEOUT_SECONDS)


def default_tokens_file() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "agentbus" / "tokens.json"


class Settings(BaseSettings):
    """Configuration of an agentbus server process (CLI flags override the environment)."""

    model_config = SettingsConfigDict(env_prefix="AGENTBUS_", extra="ignore", frozen=True)

    redis_url: str = Field(
        "local://",
        description="redis://, rediss://, unix://, redis+sentinel://, redis+cluster://, local:// (the "
        "user's managed local redis-server, shared by all their agentbus processes) or memory:// (an "
        "embedded store inside this one process).",
    )
    namespace: str = Field(
        "default", pattern=NAMESPACE_PATTERN, description="The swarm/project; keys live under it."
    )
    agent: str | None = Field(
        None, pattern=AGENT_PATTERN, description="Agent id used when a call names none."
    )
    tools: str = Field(
        "all", description="Tool profile: all, worker, coordinator, or a comma list of tool names."
    )
    lease_seconds: int = Field(300, ge=1, le=86_400, description="Default task lease.")
    max_wait_seconds: float = Field(25.0, ge=0, le=3_600, description="Cap on any wait_seconds.")
    event_retention: int = Field(10_000, ge=100, description="Events kept in the log (approximate).")
    inbox_max: int = Field(
        1_000, ge=10, le=100_000, description="Messages kept per inbox; this many unread refuse new ones."
    )
    retention_seconds: int = Field(
        86_400, ge=1, description="How long finished tasks, workflows and keys stay."
    )
    retry_backoff_seconds: float = Field(2.0, ge=0, description="First retry delay; doubles per attempt.")
    retry_backoff_max_seconds: float = Field(300.0, ge=0, description="Longest retry delay.")
    reaper_interval_seconds: float = Field(
        1.0, gt=0, le=60, description="How often expired leases are swept."
    )
    tokens_file: Path = Field(
        default_factory=default_tokens_file,
        description="HTTP bearer tokens (hashed); while this file exists, HTTP requires a token.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    redis_timeout_seconds: float = Field(
        DEFAULT_TIMEOUT,
        gt=0,
        le=300,
        description="How long one Redis command may take; past it the call fails with backend_unavailable.",
    )
    max_sessions: int = Field(
        1_000, ge=1, description="HTTP: legacy (initialize) sessions open at once in one process."
    )
    max_sessions_per_token: int = Field(
        100, ge=1, description="HTTP: legacy sessions one token may hold open in one process."
    )
    session_idle_seconds: float = Field(
        300.0, gt=0, le=86_400, description="HTTP: a legacy session with no request or stream this long ends."
    )
    max_waits_per_token: int = Field(
        512,
        ge=1,
        description="Tool calls one token may have waiting (wait_seconds > 0) at once in one process.",
    )
    max_listen_streams_per_token: int = Field(
        16, ge=1, description="subscriptions/listen streams one token may hold open in one process."
    )
    max_subscriptions_per_token: int = Field(
        1_000,
        ge=1,
        description="Resource URIs one token follows, by resources/subscribe and listen streams together "
        "(per session or stream without tokens).",
    )
    http_request_timeout_seconds: float = Field(
        15.0,
        gt=0,
        le=3_600,
        description="HTTP: time a client has to send a whole request (headers and body).",
    )
    http_max_connections: int = Field(
        2_048,
        ge=1,
        description="HTTP: open connections (or requests in progress) past which requests get 503.",
    )
    # Namespace quotas: together they give the namespace's Redis memory a ceiling (docs/limits.md).
    event_log_max_bytes: int = Field(
        64 * 2**20, ge=262_144, description="Bytes of topic, agent and data the event log keeps at most."
    )
    tasks_max: int = Field(
        100_000, ge=1, description="Unfinished tasks a namespace holds at most; creating more is refused."
    )
    agents_max: int = Field(
        10_000, ge=1, description="Agent records (live, and gone within the retention) a namespace keeps."
    )
    inbox_max_bytes: int = Field(
        2**20, ge=65_536, description="Bytes of messages one inbox keeps; unread ones past it refuse new."
    )
    idle_inboxes_max: int = Field(
        1_000, ge=1, description="Inboxes of agents not live (they expire after retention_seconds)."
    )
    fanout_max_bytes: int = Field(
        2**20, ge=65_536, description="Recipients x message bytes one role: or * message may copy."
    )
    locks_max: int = Field(100_000, ge=1, description="Locks held at once in a namespace; more are refused.")
    state_keys_max: int = Field(
        10_000, ge=1, description="Shared-state keys (set_state) a namespace holds at once; more are refused."
    )
    state_value_max_bytes: int = Field(
        65_536, ge=1_024, le=65_536, description="Bytes of JSON one shared-state value may have."
    )
    # Each owner's share of those bounds (an owner: a token, or the agent a call acts as without one), so
    # one cannot use a bound up for the others; a tenth of each, so it takes ten owners to fill one.
    tasks_max_per_owner: int = Field(
        10_000, ge=1, description="Unfinished tasks one token (or agent, without tokens) may have created."
    )
    agents_max_per_owner: int = Field(
        1_000, ge=1, description="Agent records (live, and gone within the retention) one token registers."
    )
    idle_inboxes_max_per_owner: int = Field(
        100, ge=1, description="Inboxes of agents not live that one token's (or agent's) messages opened."
    )
    locks_max_per_owner: int = Field(
        10_000, ge=1, description="Locks one token's agents (or one agent, without tokens) hold at once."
    )
    state_keys_max_per_owner: int = Field(
        1_000,
        ge=1,
        description="Shared-state keys one token (or agent, without tokens) created that are set.",
    )

    @field_validator("redis_url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not url.startswith(SCHEMES):
            raise ValueError(f"redis_url must start with one of {', '.join(SCHEMES)}")
        return url
