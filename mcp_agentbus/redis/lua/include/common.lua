-- Helpers shared by every script: server time, events, wake-ups, list fields.

-- Read once per script: every step of a call sees the same now (and TIME is not asked three times).
local NOW_MS
local function now_ms()
  if not NOW_MS then
    local t = redis.call('TIME')
    NOW_MS = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return NOW_MS
end

-- Wake-ups are hints for waiters in any server process; Redis state stays the truth. Each topic has a
-- channel of its own (keys.Keys.wake: past WAKE_TOPIC_MAX bytes named by a hash, `topic_hash`), which only
-- processes with a waiter or a resource subscriber for it listen to; the message is `hint` (what changed,
-- for resource subscribers: server/resources.changed_by), the topic itself unless an aggregate topic
-- (`task:*`, `event:*`, ...) carries it. On Redis Cluster >= 7 they are shard channels: they stay on the
-- namespace's node instead of being broadcast to every node.
local WAKE_PUBLISH = (SHARDED_WAKE and (redis.REDIS_VERSION_NUM or 0) >= 0x070000) and 'SPUBLISH' or 'PUBLISH'
local function topic_hash(topic) -- two 32-bit polynomial hashes, as keys.topic_hash (no SHA-1 in every Lua)
  local a, b = 7, 0
  for i = 1, #topic do
    local byte = string.byte(topic, i)
    a = (a * 31 + byte) % 4294967296
    b = (b * 131 + byte) % 4294967296
  end
  return string.format('#%08x%08x', a, b)
end

local woken = {}
local function wake(topic, hint)
  hint = hint or topic
  local once = topic .. '\0' .. hint
  if woken[once] then return end
  woken[once] = true
  local name = topic
  if #name > WAKE_TOPIC_MAX then name = topic_hash(topic) end
  redis.call(WAKE_PUBLISH, K_WAKE .. name, hint)
end

-- A lock on `res` was freed, or a waiter left its queue: the hint goes to the resource's path and to each
-- directory above it (core/wakeups.lock_topics), where the waits it may unblock listen: a wait on the
-- same path, on a directory above it (`src/` is freed by `src/a.py`) or below it. At most one publish
-- per '/' of a name (RESOURCE_RE bounds its length).
local function wake_lock(res)
  local path = res
  if string.sub(path, -1) == '/' then path = string.sub(path, 1, -2) end
  wake('lock:' .. path)
  local i = string.find(path, '/', 1, true)
  while i do
    wake('lock:' .. string.sub(path, 1, i - 1))
    i = string.find(path, '/', i + 1, true)
  end
end

-- The event log keeps about EVENT_RETENTION events and at most EVENT_LOG_MAX_BYTES (plus a 64th) of topic,
-- agent and data. A stream trims by count or id only, so `counters.event_bytes` counts every byte ever
-- logged and `events:marks` keeps the id of the event that crosses each 64th of the bound, scored by
-- the bytes logged before it: trimming to the oldest mark within the bound keeps the log under it.
local MARKS_PER_LOG = 64

local function trim_events_by_bytes(id, size)
  local before = redis.call('HINCRBY', K_COUNTERS, 'event_bytes', size) - size
  local step = math.max(1, math.floor(EVENT_LOG_MAX_BYTES / MARKS_PER_LOG))
  if math.floor(before / step) == math.floor((before + size) / step) then return end
  redis.call('ZADD', K_EVENTS_MARKS, before, id)
  local floor = before + size - EVENT_LOG_MAX_BYTES
  if floor <= 0 then return end
  local oldest = redis.call('ZRANGEBYSCORE', K_EVENTS_MARKS, floor, '+inf', 'LIMIT', 0, 1)[1]
  if oldest then redis.call('XTRIM', K_EVENTS, 'MINID', oldest) end
  redis.call('ZREMRANGEBYSCORE', K_EVENTS_MARKS, '-inf', '(' .. floor)
end

-- Every state change appends its event here, in the same script; `data` is a table or JSON text.
-- The wake-ups name the topic, and the workflow it concerns, for waiters and resource subscribers.
local function emit(topic, agent, data)
  local workflow
  if type(data) == 'table' then
    workflow = data.workflow
    data = cjson.encode(data)
  end
  agent = agent or ''
  local id = redis.call('XADD', K_EVENTS, 'MAXLEN', '~', EVENT_RETENTION, '*', 'topic', topic, 'agent', agent,
    'data', data)
  trim_events_by_bytes(id, #topic + #agent + #data)
  -- An event's hint goes to its topic, its family (`event:task.*`) and all events (`event:*`), for
  -- the waits and resource subscribers that follow a pattern; a workflow's to it and to all workflows.
  local hint = 'event:' .. topic
  wake(hint)
  local family = string.match(topic, '^([^.]*)%.')
  if family then wake('event:' .. family .. '.*', hint) end
  wake('event:*', hint)
  if type(workflow) == 'string' and workflow ~= '' then
    wake('workflow:' .. workflow)
    wake('workflow:*', 'workflow:' .. workflow)
  end
  return id
end

-- Tell `agent` (in the notices of its next tool call) that something it held was taken back.
local function tell_lost(agent, what)
  wake('lost:' .. agent) -- news that ends the agent's waits (core/wakeups.py)
  redis.call('RPUSH', K_LOST .. agent, what)
  redis.call('LTRIM', K_LOST .. agent, -50, -1)
  redis.call('PEXPIRE', K_LOST .. agent, RETENTION_MS)
end

local function split(csv)
  local out = {}
  if csv and csv ~= '' then
    for item in string.gmatch(csv, '[^,]+') do out[#out + 1] = item end
  end
  return out
end

-- Owners' shares (context.py): what an owner holds of the namespace's tasks, agent records, idle inboxes
-- and locks is kept in `owned_<kind>:<owner>`, a ZSET whose score is when the entry stops counting
-- (+inf while it may not), so a count never depends on every decrement having been caught. A call
-- that came without an owner is charged to the agent it acts as.
local function owner_for(agent)
  if OWNER ~= '' then return OWNER end
  return agent
end

-- How many entries of an owner's `key` count at `now`; a bounded batch of those whose time passed is
-- dropped on the way (what is left of them is not counted either).
local function owned_count(key, now)
  local passed = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, 20)
  if #passed > 0 then redis.call('ZREM', key, unpack(passed)) end
  return redis.call('ZCOUNT', key, '(' .. now, '+inf')
end

-- The refusal of a call that would take `owner`, which `has` so many, past its `share` of `what`.
local function over_share(owner, has, share, what, refused, hint, setting)
  local whose = string.sub(owner, 1, 6) == 'token:' and "your token's share" or ('agent ' .. owner .. "'s share")
  return { 'invalid_argument', whose .. ' of this namespace is ' .. share .. ' ' .. what .. ' and it has ' ..
    has .. '; ' .. refused, hint .. ' Other tokens and agents keep their own shares; the operator sets ' ..
    'this one with AGENTBUS_' .. setting .. '.' }
end
