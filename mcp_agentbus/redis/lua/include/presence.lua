-- Presence: an agent is live while its score in K_AGENTS (its presence expiry) lies ahead. A heartbeat
-- sets its length (ttl_ms); every call made for the agent renews it (scripts.py runs `renew_presence`
-- for CALLER before each script), for at least as long as the call may wait (STAY_MS), and the reaper
-- renews it while the agent holds a lease or a lock, so an agent is never reported gone while it works.
-- (needs keys.lua, common.lua and inbox.lua)

-- The agent whose presence this script has set already (heartbeat), which needs no renewing after.
local presence_set_for

-- A write that renews presence. Redis out of memory refuses it (OOM): it is left out then, so that a read
-- made for the agent still works (and a change is refused at its own first write, before it writes).
local function renewing(...)
  local done = redis.pcall(...)
  if type(done) == 'table' and done.err and string.sub(done.err, 1, 4) ~= 'OOM ' then error(done) end
end

-- A call made for a registered agent is a sign of life: its presence runs for its ttl from now, or
-- for `stay_ms` (a call that waits) if longer.
local function renew_presence(agent, now, stay_ms)
  if agent == presence_set_for and stay_ms == 0 then return end
  local expires = redis.call('ZSCORE', K_AGENTS, agent)
  if not expires then return end -- never registered, or gone: its next heartbeat registers it again
  local ttl_ms = tonumber(redis.call('HGET', K_AGENT .. agent, 'ttl_ms') or 0)
  local until_ms = now + math.max(ttl_ms, stay_ms, 1)
  if until_ms > tonumber(expires) then renewing('ZADD', K_AGENTS, until_ms, agent) end
  renewing('HSET', K_AGENT .. agent, 'last_seen', now)
end

-- `agent` leaves the live agents: it went silent (the reaper: 'agent.gone') or said it goes
-- ('agent.left', heartbeat status "offline"). Its leases and locks are not released: they expire as usual.
local function leave(agent, now, topic)
  redis.call('ZREM', K_AGENTS, agent)
  redis.call('ZADD', K_AGENTS_GONE, now, agent)
  redis.call('HSET', K_AGENT .. agent, 'status', topic == 'agent.left' and 'offline' or 'gone')
  redis.call('PEXPIRE', K_AGENT .. agent, RETENTION_MS)
  -- Its owner's share is used by its record until the record expires (the key too, once nothing in
  -- it counts for good).
  local owner = redis.call('HGET', K_AGENT .. agent, 'owned_by')
  if owner then
    redis.call('ZADD', K_OWNED_AGENTS .. owner, now + RETENTION_MS, agent)
    if redis.call('ZCOUNT', K_OWNED_AGENTS .. owner, '+inf', '+inf') == 0 then
      redis.call('PEXPIRE', K_OWNED_AGENTS .. owner, RETENTION_MS)
    end
  end
  emit(topic, agent, { agent = agent })
  -- Its inbox starts to expire (idle) like any absent agent's.
  park_inbox(agent, now)
end
