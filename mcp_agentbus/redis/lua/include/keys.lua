-- The KEYS layout every script receives, built by keys.py (LAYOUT). Families end in ':' and take
-- an id; the rest are whole keys. All share the namespace hash tag.
local K_TASK, K_READY, K_WF, K_AGENT, K_HELD, K_IDEM = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local K_EVENTS, K_LEASES, K_DELAYED, K_DEAD = KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local K_WORKFLOWS, K_AGENTS, K_AGENTS_GONE, K_COUNTERS, K_REAPER = KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15]
local K_WAKE = KEYS[16]
local K_LOCK, K_AGENT_LOCKS, K_LOCK_QUEUE, K_LOCK_WAITS = KEYS[17], KEYS[18], KEYS[19], KEYS[20]
local K_LOCKS, K_LOCK_NAMES, K_LOCK_FENCES = KEYS[21], KEYS[22], KEYS[23]
local K_INBOX, K_UNREAD, K_MSG, K_LOST = KEYS[24], KEYS[25], KEYS[26], KEYS[27]
local K_CASCADE, K_EVENT_MARKS, K_IDLE_INBOXES, K_INBOX_BYTES = KEYS[28], KEYS[29], KEYS[30], KEYS[31]
local K_OWNED_TASKS, K_OWNED_AGENTS, K_OWNED_INBOXES, K_OWNED_LOCKS = KEYS[32], KEYS[33], KEYS[34], KEYS[35]
local K_INBOX_OWNERS = KEYS[36]
-- What every script gets first: the namespace's bounds (a comma list, in the order of store.py's
-- BOUNDS) ending with the owner of the call (context.py; '' = the agent it acts as), retention of
-- finished records, and the agent whose notices to add to the reply ('' = none; see notices.lua).
local BOUNDS = {}
for n in string.gmatch(ARGV[1], '([^,]*),') do BOUNDS[#BOUNDS + 1] = tonumber(n) end
local OWNER = string.match(ARGV[1], '([^,]*)$')
local EVENTS_MAX, EVENT_LOG_MAX_BYTES, TASKS_MAX, AGENTS_MAX = BOUNDS[1], BOUNDS[2], BOUNDS[3], BOUNDS[4]
local INBOX_MAX_BYTES, IDLE_INBOXES_MAX, FANOUT_MAX_BYTES, MESSAGES_MAX = BOUNDS[5], BOUNDS[6], BOUNDS[7],
  BOUNDS[8]
local LOCKS_MAX, TASKS_MAX_PER_OWNER, AGENTS_MAX_PER_OWNER = BOUNDS[9], BOUNDS[10], BOUNDS[11]
local IDLE_INBOXES_MAX_PER_OWNER, LOCKS_MAX_PER_OWNER = BOUNDS[12], BOUNDS[13]
local RETENTION_MS = tonumber(ARGV[2])
local NOTICES_FOR = ARGV[3]
