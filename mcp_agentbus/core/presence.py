"""Presence: agents say they are alive (extending every lease they hold) and see who else is."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcp_agentbus.core.models import (
    AgentView,
    ExtendedLease,
    ExtendedLock,
    HeartbeatResult,
    ListAgentsResult,
    iso,
)
from mcp_agentbus.errors import InvalidArgument, explain_validation
from mcp_agentbus.ids import AGENT_RE, CAPABILITY_RE, MAX_NOTE, TaskId, seconds
from mcp_agentbus.redis.replies import HEARTBEAT, Left
from mcp_agentbus.redis.store import Store, require

MAX_LISTED_AGENTS = 1000
_CAPS_RE = re.compile(r"[^,]+")


OFFLINE = "offline"  # the status that leaves the bus
LAPSED = (
    "You had been reported gone at {at} (no call for longer than your ttl_seconds); you are live again. "
    "Other agents saw agent.gone, then agent.joined."
)


class ProgressReport(BaseModel):
    """How far the agent has come with a task it holds, as heartbeat takes it."""

    model_config = ConfigDict(extra="forbid")

    task_id: TaskId
    percent: float = Field(ge=0, le=100)
    message: str = Field("", max_length=MAX_NOTE)


class Presence:
    """Who is on the bus: heartbeats register an agent and extend what it holds; listing reads them."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def heartbeat(
        self,
        agent: str,
        *,
        status: str = "idle",
        capabilities: Sequence[str] | None = None,
        note: str = "",
        ttl_seconds: float = 60,
        progress: ProgressReport | Mapping[str, Any] | None = None,
    ) -> HeartbeatResult:
        """Register or refresh `agent`; `capabilities=None` keeps the registered ones. `progress` is
        recorded on a task the agent holds (refused, nothing changed, for any other)."""
        require(agent, AGENT_RE, "agent id")
        for cap in capabilities or ():
            require(cap, CAPABILITY_RE, "capability")
        ttl_ms = math.ceil(seconds(ttl_seconds, "ttl_seconds") * 1000)
        try:
            report = (
                progress if not isinstance(progress, Mapping) else ProgressReport.model_validate(progress)
            )
        except ValidationError as exc:
            raise InvalidArgument(f"invalid progress: {explain_validation(exc)}") from exc
        beat = await self._store.run(
            HEARTBEAT,
            agent,
            status,
            ",".join(dict.fromkeys(capabilities or ())),
            "0" if capabilities is None else "1",
            note,
            ttl_ms,
            *((report.task_id, repr(report.percent), report.message) if report else ("", "", "")),
        )
        if isinstance(beat, Left):
            return _left(agent, note, beat)
        view = AgentView(
            agent=agent,
            status=status,
            alive=True,
            capabilities=beat.capabilities,
            note=note,
            last_seen=iso(beat.now_ms),
            expires_at=iso(beat.now_ms + ttl_ms),
            joined_at=iso(beat.joined_at_ms),
            tasks=list(beat.leases),
            locks=list(beat.locks),
            assigned=beat.assigned,
        )
        lapsed = [] if beat.gone_at_ms is None else [LAPSED.format(at=iso(beat.gone_at_ms))]
        return HeartbeatResult(
            agent=view,
            joined=beat.joined,
            leases_extended=[
                ExtendedLease(task_id=task, expires_at=iso(ms) or "") for task, ms in beat.leases.items()
            ],
            locks_extended=[
                ExtendedLock(resource=res, expires_at=iso(ms) or "") for res, ms in beat.locks.items()
            ],
            live_agents=beat.live_agents,
            unread_messages=beat.unread,
            notices=lapsed,
        )

    async def list_agents(
        self, *, capability: str | None = None, include_gone: bool = False
    ) -> ListAgentsResult:
        """Live agents (with `include_gone`, recently gone ones too), optionally only those with
        `capability`."""
        if capability is not None:
            require(capability, CAPABILITY_RE, "capability")
        keys, redis = self._store.keys, self._store.redis
        now_ms = await self._store.now_ms()
        with self._store.backend():
            async with redis.pipeline(transaction=False) as pipe:
                pipe.zrange(keys.agents, 0, MAX_LISTED_AGENTS - 1, withscores=True)
                if include_gone:
                    pipe.zrevrange(keys.agents_gone, 0, MAX_LISTED_AGENTS - 1)
                replies = await pipe.execute()
            alive = replies[0]
            gone = replies[1] if include_gone else []
            expiry = {agent: int(score) for agent, score in alive}
            ids = [*expiry, *gone]
            async with redis.pipeline(transaction=False) as pipe:
                for agent in ids:
                    pipe.hgetall(keys.agent(agent))
                    pipe.smembers(keys.held(agent))
                    pipe.smembers(keys.agent_locks(agent))
                    pipe.zcard(keys.assigned(agent))
                records = await pipe.execute()
        agents = []
        for agent, record, held, locks, assigned in zip(
            ids, records[::4], records[1::4], records[2::4], records[3::4], strict=True
        ):
            caps = _CAPS_RE.findall(record.get("caps", ""))
            if capability is not None and capability not in caps:
                continue
            # Presence never lapses while the agent holds work (the reaper renews it; between its sweeps
            # the expiry may already have passed).
            alive_now = expiry.get(agent, 0) > now_ms or (agent in expiry and bool(held or locks))
            agents.append(
                AgentView(
                    agent=agent,
                    status=record.get("status", "unknown") if alive_now or agent not in expiry else "gone",
                    alive=alive_now,
                    capabilities=caps,
                    note=record.get("note", ""),
                    last_seen=iso(record.get("last_seen")),
                    expires_at=iso(expiry.get(agent)),
                    joined_at=iso(record.get("joined_at")),
                    tasks=sorted(held, key=lambda t: int(t[2:])),
                    locks=sorted(locks),
                    assigned=assigned,
                )
            )
        return ListAgentsResult(agents=agents)


def _left(agent: str, note: str, left: Left) -> HeartbeatResult:
    held = [f"task {task} (lease until {iso(ms)})" for task, ms in left.leases.items()]
    held += [f"lock {res} (until {iso(ms)})" for res, ms in left.locks.items()]
    still = (
        f"You still hold {', '.join(held)}: complete, fail or release them, or they expire on their own."
        if held
        else "You hold no lease or lock."
    )
    return HeartbeatResult(
        agent=AgentView(
            agent=agent,
            status=OFFLINE,
            alive=False,
            capabilities=[],
            note=note,
            last_seen=iso(left.now_ms),
            expires_at=None,
            joined_at=None,
            tasks=list(left.leases),
            locks=list(left.locks),
        ),
        joined=False,
        leases_extended=[],
        locks_extended=[],
        live_agents=left.live_agents,
        unread_messages=left.unread,
        notices=[f"You left the bus (agent.left); others no longer see you as live. {still}"],
    )


REASSIGN = {
    "task": "cancel_task it and create it again with the right assignee",
    "workflow": "cancel_task the workflow (workflow_id) and create it again with the right assignee",
}


async def unregistered(store: Store, assignees: Iterable[str | None], made: str) -> list[str]:
    """A notice for each of `assignees` (None: none) the bus keeps no record of (it never sent a
    heartbeat, or left longer ago than the retention): what is assigned to it waits for it alone, so a
    mistyped id would leave it waiting for good. `made` (a key of REASSIGN) says how to assign again."""
    names = sorted({name for name in assignees if name})
    if not names:
        return []
    with store.backend():
        async with store.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.exists(store.keys.agent(name))
            known = await pipe.execute()
    return [
        f"No agent {name} is known to the bus (it never sent a heartbeat, or left longer ago than the "
        f"retention): what is assigned to it waits for it alone. If the id is a mistake, {REASSIGN[made]}; "
        "list_agents shows who is here."
        for name, found in zip(names, known, strict=True)
        if not found
    ]
