-- heartbeat: register or refresh an agent and extend every lease and lock it holds, in one step. A
-- live agent's inbox does not expire. Status 'offline' leaves instead: presence removed at once
-- ('agent.left'), leases and locks kept until they expire (the reply lists them). At most AGENTS_MAX agents are live, and at most AGENTS_MAX
-- records (live and gone) are kept: a newcomer pushes out the record of the agent gone longest. A new
-- record is charged to the call's owner (its `owned_by`), at most AGENTS_MAX_PER_OWNER each, until the
-- record goes: an agent that comes back under another owner stays charged to the first.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- With progress, it first checks that the agent holds that task (else it refuses, nothing written), then
-- records it on the task ('task.progress'), until the task is claimed again.
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, agent, status, capabilities (comma list), capabilities given
--       ('1'|'0': '0' keeps the registered ones), note, ttl_ms, progress task_id ('' = no progress),
--       progress percent, progress message
-- returns: {'ok', joined ('1'|'0'), {task_id, expires_at_ms, ...}, live_agents, capabilities csv,
--           joined_at_ms, now_ms, {resource, expires_at_ms, ...}, unread messages,
--           gone_at_ms | '' (when it re-joined after its presence had lapsed), ready tasks assigned to it}
--        | {'left', {task_id, expires_at_ms, ...}, {resource, expires_at_ms, ...}, now_ms, live_agents,
--           unread messages} (status 'offline')
--        | {'invalid_argument', message, hint} (AGENTS_MAX agents are live, or the owner's share is used)
--        | {'not_found' | 'wrong_state', message, hint} (progress for a task it does not hold)
--@include keys.lua
--@include common.lua
--@include inbox.lua
--@include presence.lua

local agent, status, caps, caps_given, note, ttl_ms = ARGV[4], ARGV[5], ARGV[6], ARGV[7] == '1', ARGV[8],
  tonumber(ARGV[9])
local progress_of, percent, progress_msg = ARGV[10], ARGV[11], ARGV[12]
local now = now_ms()
if progress_of ~= '' then
  local state, owner, wf = unpack(redis.call('HMGET', K_TASK .. progress_of, 'state', 'owner', 'wf'))
  if not state then
    return { 'not_found', 'task ' .. progress_of .. ' does not exist; nothing was recorded',
      'Report progress for a task you claimed (heartbeat lists your leases).' }
  end
  if state ~= 'claimed' or owner ~= agent then
    return { 'wrong_state', 'agent ' .. agent .. ' does not hold task ' .. progress_of .. ' (it is ' .. state ..
      (state == 'claimed' and (', held by ' .. owner) or '') .. '); nothing was recorded',
      'Report progress only for a task you claimed and still hold (heartbeat lists your leases).' }
  end
  redis.call('HSET', K_TASK .. progress_of, 'progress_pct', percent, 'progress_msg', progress_msg,
    'progress_at', now)
  emit('task.progress', agent, { task = progress_of, workflow = wf, percent = tonumber(percent),
    message = progress_msg })
end
if status == 'offline' then
  if redis.call('ZSCORE', K_AGENTS, agent) then leave(agent, now, 'agent.left') end
  local leases, locks = {}, {}
  for _, id in ipairs(redis.call('SMEMBERS', K_HELD .. agent)) do
    local state, owner, lease_exp = unpack(redis.call('HMGET', K_TASK .. id, 'state', 'owner', 'lease_exp'))
    if state == 'claimed' and owner == agent then
      leases[#leases + 1] = id
      leases[#leases + 1] = lease_exp
    end
  end
  for _, res in ipairs(redis.call('SMEMBERS', K_AGENT_LOCKS .. agent)) do
    local owner, expires = unpack(redis.call('HMGET', K_LOCK .. res, 'owner', 'expires'))
    if owner == agent then
      locks[#locks + 1] = res
      locks[#locks + 1] = expires
    end
  end
  return { 'left', leases, locks, now, redis.call('ZCOUNT', K_AGENTS, now, '+inf'),
    redis.call('ZCARD', K_UNREAD .. agent) }
end
local joined = not redis.call('ZSCORE', K_AGENTS, agent)
local was, charged, was_note = unpack(redis.call('HMGET', K_AGENT .. agent, 'status', 'owned_by', 'note'))
local gone_at = joined and was == 'gone' and redis.call('ZSCORE', K_AGENTS_GONE, agent) or false
if joined then
  local live = redis.call('ZCARD', K_AGENTS)
  if live >= AGENTS_MAX then
    return { 'invalid_argument', live .. ' agents are live in this namespace, the most it admits; ' ..
      agent .. ' was not registered', 'Wait for agents to go silent (their heartbeats stop) and retry, ' ..
      'or ask the operator to raise AGENTBUS_AGENTS_MAX.' }
  end
  if not charged then
    charged = owner_for(agent)
    local has = owned_count(K_OWNED_AGENTS .. charged, now)
    if has >= AGENTS_MAX_PER_OWNER then
      return over_share(charged, has, AGENTS_MAX_PER_OWNER, 'agent records (live, and gone within the ' ..
        'retention)', agent .. ' was not registered', 'Act as agents registered already (list_agents ' ..
        'shows them), or wait for some to go silent and their records to expire.', 'AGENTS_MAX_PER_OWNER')
    end
  end
  if not was and live + redis.call('ZCARD', K_AGENTS_GONE) >= AGENTS_MAX then
    local oldest = redis.call('ZRANGE', K_AGENTS_GONE, 0, 0)[1] -- there is one: live < AGENTS_MAX
    local owner = redis.call('HGET', K_AGENT .. oldest, 'owned_by')
    if owner then redis.call('ZREM', K_OWNED_AGENTS .. owner, oldest) end
    redis.call('ZREM', K_AGENTS_GONE, oldest)
    redis.call('DEL', K_AGENT .. oldest)
  end
  -- Counted while live; the reaper sets when it stops (its record expires) once it goes silent.
  redis.call('ZADD', K_OWNED_AGENTS .. charged, '+inf', agent)
  redis.call('PERSIST', K_OWNED_AGENTS .. charged)
end

redis.call('HSET', K_AGENT .. agent, 'id', agent, 'status', status, 'note', note, 'ttl_ms', ttl_ms,
  'last_seen', now)
if caps_given then redis.call('HSET', K_AGENT .. agent, 'caps', caps) end
if joined then redis.call('HSET', K_AGENT .. agent, 'joined_at', now, 'owned_by', charged) end
redis.call('PERSIST', K_AGENT .. agent)
redis.call('ZADD', K_AGENTS, now + ttl_ms, agent)
presence_set_for = agent
redis.call('ZREM', K_AGENTS_GONE, agent)
unpark_inbox(agent)
local registered_caps, joined_at = unpack(redis.call('HMGET', K_AGENT .. agent, 'caps', 'joined_at'))
if joined then
  emit('agent.joined', agent, { agent = agent, status = status, note = note,
    capabilities = split(registered_caps) })
elseif was ~= status or was_note ~= note then -- a new note is news too: the page shows it at once
  emit('agent.status', agent, { agent = agent, status = status, was = was, note = note })
end

local extended = {}
for _, id in ipairs(redis.call('SMEMBERS', K_HELD .. agent)) do
  local state, owner, lease_ms = unpack(redis.call('HMGET', K_TASK .. id, 'state', 'owner', 'lease_ms'))
  if state == 'claimed' and owner == agent then
    local expires = now + tonumber(lease_ms)
    redis.call('HSET', K_TASK .. id, 'lease_exp', expires)
    redis.call('ZADD', K_LEASES, expires, id)
    extended[#extended + 1] = id
    extended[#extended + 1] = expires
  else
    redis.call('SREM', K_HELD .. agent, id)
  end
end
local locks = {}
for _, res in ipairs(redis.call('SMEMBERS', K_AGENT_LOCKS .. agent)) do
  local owner, lock_ttl_ms, owned_by = unpack(redis.call('HMGET', K_LOCK .. res, 'owner', 'ttl_ms',
    'owned_by'))
  if owner == agent then
    local expires = now + tonumber(lock_ttl_ms)
    redis.call('HSET', K_LOCK .. res, 'expires', expires)
    redis.call('ZADD', K_LOCKS, expires, res)
    if owned_by then redis.call('ZADD', K_OWNED_LOCKS .. owned_by, expires, res) end
    locks[#locks + 1] = res
    locks[#locks + 1] = expires
    wake('locks')
  else
    redis.call('SREM', K_AGENT_LOCKS .. agent, res)
  end
end
local live = redis.call('ZCOUNT', K_AGENTS, now, '+inf')
local unread = redis.call('ZCARD', K_UNREAD .. agent)
return { 'ok', joined and '1' or '0', extended, live, registered_caps or '', joined_at, now, locks, unread,
  gone_at or '', redis.call('ZCARD', K_ASSIGNED .. agent) }
