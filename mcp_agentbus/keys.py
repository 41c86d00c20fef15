"""Every Redis key agentbus uses, built in one place.

All keys of a namespace share the hash tag ``{<ns>}``, so every script touches a single Redis
Cluster slot. Scripts receive the same key layout (`Keys.script_keys`) on every call: static keys
by name, and *families* — a prefix to which the script appends an id (``task:`` + ``t-17``). Lua
never invents a key of its own; the index of each entry is mirrored in ``lua/include/keys.lua``.

| key                        | type   | holds                                                    |
|----------------------------|--------|----------------------------------------------------------|
| ``ab:{ns}:task:<id>``      | HASH   | one task: fields, state, lease, result                   |
| ``ab:{ns}:ready:<cap>``    | ZSET   | ready task ids of a capability, score = priority·2³² + seq |
| ``ab:{ns}:wf:<id>``        | HASH   | one workflow: title, task ids, per-state counters        |
| ``ab:{ns}:agent:<id>``     | HASH   | presence record of an agent                              |
| ``ab:{ns}:held:<agent>``   | SET    | task ids whose lease the agent holds                     |
| ``ab:{ns}:idem:<scope>``   | STRING | first result of an idempotent call (expires)            |
| ``ab:{ns}:events``         | STREAM | the event log, trimmed to the retention                  |
| ``ab:{ns}:leases``         | ZSET   | claimed task ids, score = lease expiry (ms)              |
| ``ab:{ns}:delayed``        | ZSET   | delayed and retry-pending task ids, score = due time     |
| ``ab:{ns}:dead``           | ZSET   | dead task ids, score = time of death                     |
| ``ab:{ns}:workflows``      | ZSET   | workflow ids, score = creation time                      |
| ``ab:{ns}:agents``         | ZSET   | live agent ids, score = presence expiry (ms)             |
| ``ab:{ns}:agents:gone``    | ZSET   | agents whose presence expired, score = when              |
| ``ab:{ns}:counters``       | HASH   | id and FIFO sequence counters                            |
| ``ab:{ns}:reaper``         | STRING | which server process runs the reaper (expires)           |
| ``ab:{ns}:wake``           | channel| pub/sub wake-up hints (never the source of truth)        |
| ``ab:{ns}:lock:<resource>``| HASH   | a held lock: owner, token, fencing token, expiry         |
| ``ab:{ns}:agent_locks:<a>``| SET    | resources the agent holds locks on                       |
| ``ab:{ns}:lock_queue:<res>``| ZSET  | agents waiting for a resource, in arrival order          |
| ``ab:{ns}:lock_waits:<res>``| HASH  | when each queued agent stops waiting (ms)                |
| ``ab:{ns}:locks``          | ZSET   | held resources, score = lock expiry (ms)                 |
| ``ab:{ns}:lock_names``     | ZSET   | held resources, all score 0 (lexicographic range index)  |
| ``ab:{ns}:lock_fences``    | HASH   | last fencing token per resource (never decreases)        |
| ``ab:{ns}:inbox:<agent>``  | STREAM | the agent's messages, read and unread (bounded)          |
| ``ab:{ns}:unread:<agent>`` | ZSET   | entry ids of unread messages, score = message sequence   |
| ``ab:{ns}:msg:<id>``       | HASH   | a sent message's thread and sender, for replies (expires)|
| ``ab:{ns}:lost:<agent>``   | LIST   | leases and locks taken back from it, until it is told    |
| ``ab:{ns}:health``         | STRING | written by ``/healthz`` to prove Redis takes changes (expires) |
| ``ab:{ns}:cascade``        | LIST   | cancel/unblock cascades left for the reaper to continue  |
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NAMESPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_NAMESPACE_RE = re.compile(NAMESPACE_PATTERN)

# The KEYS layout every script sees, in order (mirrored by lua/include/keys.lua). A name ending in
# ":" is a family: the script appends an id to it.
LAYOUT = (
    "task:",
    "ready:",
    "wf:",
    "agent:",
    "held:",
    "idem:",
    "events",
    "leases",
    "delayed",
    "dead",
    "workflows",
    "agents",
    "agents:gone",
    "counters",
    "reaper",
    "wake",
    "lock:",
    "agent_locks:",
    "lock_queue:",
    "lock_waits:",
    "locks",
    "lock_names",
    "lock_fences",
    "inbox:",
    "unread:",
    "msg:",
    "lost:",
    "cascade",
)


@dataclass(frozen=True)
class Keys:
    """The keys of one namespace."""

    namespace: str
    prefix: str = field(init=False)
    script_keys: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not _NAMESPACE_RE.fullmatch(self.namespace):
            raise ValueError(f"invalid namespace {self.namespace!r}: use letters, digits, '.', '_', '-'")
        prefix = f"ab:{{{self.namespace}}}:"
        object.__setattr__(self, "prefix", prefix)
        object.__setattr__(self, "script_keys", tuple(prefix + name for name in LAYOUT))

    def task(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}"

    def workflow(self, workflow_id: str) -> str:
        return f"{self.prefix}wf:{workflow_id}"

    def agent(self, agent_id: str) -> str:
        return f"{self.prefix}agent:{agent_id}"

    def held(self, agent_id: str) -> str:
        return f"{self.prefix}held:{agent_id}"

    @property
    def events(self) -> str:
        return f"{self.prefix}events"

    @property
    def workflows(self) -> str:
        return f"{self.prefix}workflows"

    @property
    def agents(self) -> str:
        return f"{self.prefix}agents"

    @property
    def agents_gone(self) -> str:
        return f"{self.prefix}agents:gone"

    @property
    def health(self) -> str:
        return f"{self.prefix}health"

    @property
    def wake(self) -> str:
        return f"{self.prefix}wake"

    def agent_locks(self, agent_id: str) -> str:
        return f"{self.prefix}agent_locks:{agent_id}"

    def lock(self, resource: str) -> str:
        return f"{self.prefix}lock:{resource}"

    def lock_queue(self, resource: str) -> str:
        return f"{self.prefix}lock_queue:{resource}"

    @property
    def locks(self) -> str:
        return f"{self.prefix}locks"

    @property
    def leases(self) -> str:
        return f"{self.prefix}leases"

    @property
    def delayed(self) -> str:
        return f"{self.prefix}delayed"

    @property
    def dead(self) -> str:
        return f"{self.prefix}dead"

    @property
    def counters(self) -> str:
        return f"{self.prefix}counters"

    def unread(self, agent_id: str) -> str:
        return f"{self.prefix}unread:{agent_id}"

    @property
    def cascade(self) -> str:
        return f"{self.prefix}cascade"
