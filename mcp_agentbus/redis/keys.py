"""Every Redis key agentbus uses, built in one place.

All keys of a namespace share the hash tag ``{<ns>}``, so every script touches a single Redis
Cluster slot. A script gets one key, the namespace's prefix (`Keys.script_keys`: on a Cluster it routes
the call to that slot), and the ``keys.lua`` include that ``scripts.py`` generates from `LAYOUT` makes
each key of the layout from it, as a Lua local (``K_<NAME>``): static keys by name, and *families* — a
prefix to which the script appends an id (``task:`` + ``t-17``). Lua never invents a key of its own.
(One key instead of the whole layout: packing ~50 keys into every EVALSHA cost more than the script.)

Every key is bounded, so a namespace's memory has a ceiling (docs/limits.md has the formula). In the
bound column, settings are ``AGENTBUS_*`` names in lower case; "retention" is ``retention_seconds``.
Every key starts with ``ab:{<ns>}:``.

| key                  | type    | holds                                   | bound                           |
|----------------------|---------|-----------------------------------------|---------------------------------|
| ``task:<id>``        | HASH    | one task: fields, state, lease, result  | tasks_max open; done: retention |
| ``ready:<cap>``      | ZSET    | ready task ids, score = prio·2³² + seq  | tasks_max in all                |
| ``wf:<id>``          | HASH    | a workflow: title, task ids, counters   | its tasks; done: retention      |
| ``agent:<id>``       | HASH    | presence record of an agent             | agents_max (live + gone)        |
| ``held:<agent>``     | SET     | task ids whose lease the agent holds    | tasks_max in all                |
| ``idem:<scope>``     | STRING  | first result of an idempotent call      | expires: retention              |
| ``events``           | STREAM  | the event log                           | event_retention ³               |
| ``leases``           | ZSET    | claimed task ids, score = lease expiry  | tasks_max                       |
| ``delayed``          | ZSET    | delayed/retry-pending ids, score = due  | tasks_max                       |
| ``dead``             | ZSET    | dead task ids, score = time of death    | entries leave: retention        |
| ``workflows``        | ZSET    | workflow ids, score = creation time     | leave with their workflow       |
| ``agents``           | ZSET    | live agent ids, score = presence expiry | agents_max                      |
| ``agents:gone``      | ZSET    | agents whose presence expired           | agents_max - live ⁴             |
| ``counters``         | HASH    | ids, seq, ready:<cap> > 0, open, bytes  | fixed + one per ready cap       |
| ``reaper``           | STRING  | which process runs the reaper           | one, expires                    |
| ``wake:<topic>``     | channel | wake-up hints on one topic ¹⁰           | not stored                      |
| ``lock:<resource>``  | HASH    | held lock: owner, token, fence, expiry  | locks_max                       |
| ``agent_locks:<a>``  | SET     | resources the agent holds locks on      | locks_max in all                |
| ``lock_queue:<res>`` | ZSET    | agents waiting for it, arrival order    | one per waiting call            |
| ``lock_waits:<res>`` | HASH    | when each queued agent stops waiting    | as lock_queue                   |
| ``locks``            | ZSET    | held resources, score = lock expiry     | locks_max                       |
| ``lock_names``       | ZSET    | held resources, score 0 (by name)       | locks_max                       |
| ``lock_fences``      | HASH    | older versions' fence per resource      | only shrinks                    |
| ``inbox:<agent>``    | STREAM  | the agent's messages, read and unread   | inbox_max, inbox_max_bytes ¹    |
| ``unread:<agent>``   | ZSET    | unread entry ids, score = message seq   | as its inbox                    |
| ``read:<agent>``     | ZSET    | read entry ids, score = message seq ²   | as its inbox                    |
| ``lost:<agent>``     | LIST    | leases and locks taken back from it     | 50; retention                   |
| ``events:marks``     | ZSET    | an event id per 64th of the byte bound  | about 65                        |
| ``inboxes:idle``     | ZSET    | agents not live with inboxes, by expiry | idle_inboxes_max                |
| ``inbox_bytes``      | HASH    | bytes each inbox is charged             | one per inbox                   |
| ``health``           | STRING  | written by /healthz: Redis takes writes | one, expires                    |
| ``cascade``          | LIST    | cascades left for the reaper to go on   | one per ended/retried task      |
| ``owned_tasks:<o>``  | ZSET    | owner o's unfinished tasks, score +inf  | tasks_max_per_owner ⁵           |
| ``owned_agents:<o>`` | ZSET    | agents o registered, score = drop time  | agents_max_per_owner ⁵          |
| ``owned_inboxes:<o>``| ZSET    | idle inboxes o opened, score = expiry   | idle_inboxes_max_per_owner ⁵    |
| ``owned_locks:<o>``  | ZSET    | locks o's agents hold, score = expiry   | locks_max_per_owner ⁵           |
| ``inbox_owners``     | HASH    | the owner each idle inbox is charged to | idle_inboxes_max                |
| ``state:<key>``      | HASH    | a shared-state key: value, version, ... | state_keys_max ⁶                |
| ``state_keys``       | ZSET    | state keys, score 0 (by name)           | state_keys_max ⁶                |
| ``state_expiry``     | ZSET    | state keys with a ttl, score = expiry   | state_keys_max                  |
| ``state_tombs``      | ZSET    | deleted state keys, score = last version| state_keys_max ⁷                |
| ``owned_state:<o>``  | ZSET    | state keys o created, score = expiry    | state_keys_max_per_owner ⁵      |
| ``assigned:<agent>`` | ZSET    | ready ids only it may claim, as ready:  | tasks_max in all                |
| ``throughput``       | HASH    | done/failed/dead count per minute       | 3 per minute, the last hour ⁸   |
| ``depth``            | HASH    | ready queues sampled once a minute      | 60 samples of 50 capabilities ⁸ |
| ``locks_revoked``    | ZSET    | revoked lock_tokens and who revoked them| locks_max; retention            |
| ``attempts:<id>``    | LIST    | a task's attempts: holder, when, ending | newest 20; expires with task ⁹  |

¹ The inbox of an agent that is not live expires after the retention (and is dropped sooner, soonest to
expire first, when more than idle_inboxes_max wait). ² What a reply_to finds its thread by: a message
is known to the inboxes that keep it, so no per-message record outlives them.
³ And event_log_max_bytes of topic, agent and data (within a 64th). ⁴ Also left after the retention.
⁵ And the namespace's bound in all: every entry is one of the namespace's tasks, agent records, idle
inboxes or locks. An owner (``context.py``) is ``token:<grant id>`` or an agent id.
⁶ Live keys; expired ones are not shown and go (as deleted) at the next set_state, 20 a call, so live
and expired together stay within the bound. ⁷ Past it the lowest versions go and ``counters.state_floor``
keeps the highest of them: a key with no tombstone continues above it (``lua/set_state.lua``).
⁸ The reaper's first sweep of each minute trims them to the last 60 minutes (``lua/include/stats.lua``).
⁹ ``ATTEMPTS_KEPT`` in ``lua/include/attempts.lua``; it is given the task record's expiry whenever that is
set or removed (``expire_task``, ``persist_task`` there).
¹⁰ Pub/sub, not the truth (``core/wakeups.py``): one channel per hint topic (``task:<cap>``,
``inbox:<agent>``, ``state:<key>``, ``lock:<path>``, ...), subscribed by a process only while something
in it waits or follows a resource there. A topic longer than WAKE_TOPIC_MAX bytes (UTF-8) is named by a
64-bit hash of it (``wake:#<hex>``), so a channel name stays bounded whatever users name things. On Redis
Cluster ≥ 7 they are shard channels (SPUBLISH/SSUBSCRIBE), so a namespace's hints stay on its slot's node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mcp_agentbus.ids import NAMESPACE_RE

# Hint topics longer than this many bytes (user-named keys, topics) get a channel named by a hash.
WAKE_TOPIC_MAX = 100


def topic_hash(raw: bytes) -> str:
    """The channel name of an over-long topic: two 32-bit polynomial hashes of its bytes, as the Lua
    twin computes them (scripts get no SHA-1 on every server). Topics that collide share a channel,
    which costs a spurious wake-up, never a lost one."""
    a, b = 7, 0
    for byte in raw:
        a = (a * 31 + byte) % 2**32
        b = (b * 131 + byte) % 2**32
    return f"#{a:08x}{b:08x}"


# The keys every script can name (scripts.keys_lua makes their Lua locals). A name ending in ":" is a
# family: the script appends an id to it.
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
    "wake:",
    "lock:",
    "agent_locks:",
    "lock_queue:",
    "lock_waits:",
    "locks",
    "lock_names",
    "lock_fences",
    "inbox:",
    "unread:",
    "read:",
    "lost:",
    "cascade",
    "events:marks",
    "inboxes:idle",
    "inbox_bytes",
    "owned_tasks:",
    "owned_agents:",
    "owned_inboxes:",
    "owned_locks:",
    "inbox_owners",
    "state:",
    "state_keys",
    "state_expiry",
    "state_tombs",
    "owned_state:",
    "assigned:",
    "throughput",
    "depth",
    "locks_revoked",
    "attempts:",
)


@dataclass(frozen=True)
class Keys:
    """The keys of one namespace."""

    namespace: str
    prefix: str = field(init=False)
    script_keys: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not NAMESPACE_RE.fullmatch(self.namespace):
            raise ValueError(f"invalid namespace {self.namespace!r}: use letters, digits, '.', '_', '-'")
        prefix = f"ab:{{{self.namespace}}}:"
        object.__setattr__(self, "prefix", prefix)
        object.__setattr__(self, "script_keys", (prefix,))

    def task(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}"

    def ready(self, capability: str) -> str:
        return f"{self.prefix}ready:{capability}"

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

    def wake(self, topic: str) -> str:
        """The channel of hint `topic` (the Lua twin is `wake` in ``lua/include/common.lua``)."""
        raw = topic.encode()  # Lua counts bytes
        return f"{self.prefix}wake:{topic_hash(raw) if len(raw) > WAKE_TOPIC_MAX else topic}"

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
    def lock_names(self) -> str:
        return f"{self.prefix}lock_names"

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

    def attempts(self, task_id: str) -> str:
        return f"{self.prefix}attempts:{task_id}"

    def assigned(self, agent_id: str) -> str:
        return f"{self.prefix}assigned:{agent_id}"

    def inbox(self, agent_id: str) -> str:
        return f"{self.prefix}inbox:{agent_id}"

    @property
    def throughput(self) -> str:
        return f"{self.prefix}throughput"

    @property
    def depth(self) -> str:
        return f"{self.prefix}depth"

    def unread(self, agent_id: str) -> str:
        return f"{self.prefix}unread:{agent_id}"

    @property
    def cascade(self) -> str:
        return f"{self.prefix}cascade"

    def state(self, key: str) -> str:
        return f"{self.prefix}state:{key}"

    @property
    def state_keys(self) -> str:
        return f"{self.prefix}state_keys"

    @property
    def state_tombs(self) -> str:
        return f"{self.prefix}state_tombs"

    def owned(self, kind: str, owner: str) -> str:
        """What `owner` holds of `kind` (tasks, agents, inboxes, locks, state) against its share."""
        return f"{self.prefix}owned_{kind}:{owner}"
