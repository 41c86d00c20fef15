-- reap: the periodic sweep. Only the server process holding the reaper key runs it, so one sweep
-- runs at a time across all processes. Takes back expired leases (the old holder's token stops
-- working) and expired locks, promotes due delayed tasks, marks silent agents gone, continues the cancel and
-- unblock cascades earlier calls left queued, and drops expired index entries; once a minute it samples the
-- ready queues for the dashboard's charts (include/stats.lua). Each kind of work does at
-- most `batch` items per call; `more` asks the caller to call again at once.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, reaper_id, guard_ms, batch
-- returns: {'busy'}
--        | {'ok', reclaimed, promoted, gone, more ('1' when a batch was full or a cascade is left),
--           locks_expired, cascaded (tasks cancelled or unblocked by continued cascades)}
--@include keys.lua
--@include stats.lua
--@include common.lua
--@include attempts.lua
--@include tasks.lua
--@include locks.lua

local me, guard_ms, batch = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local holder = redis.call('GET', K_REAPER)
if holder and holder ~= me then return { 'busy' } end
redis.call('SET', K_REAPER, me, 'PX', guard_ms)
local now = now_ms()
cascade_budget = batch -- shared by the cascades of tasks killed below and the continued ones

local expired = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', now, 'LIMIT', 0, batch)
local reclaimed = 0
for _, id in ipairs(expired) do
  local state, owner, lease_exp, attempts, max_attempts, wf = unpack(redis.call('HMGET', K_TASK .. id,
    'state', 'owner', 'lease_exp', 'attempts', 'max_attempts', 'wf'))
  if state ~= 'claimed' then
    redis.call('ZREM', K_LEASES, id)
  elseif tonumber(lease_exp) <= now then
    reclaimed = reclaimed + 1
    attempts, max_attempts = tonumber(attempts), tonumber(max_attempts)
    local err = 'lease expired on attempt ' .. attempts .. ' (' .. owner .. ' stopped without completing)'
    drop_lease(id, owner, 'expired', now, err)
    tell_lost(owner, 'task ' .. id)
    emit('task.reclaimed', owner, { task = id, workflow = wf, attempt = attempts })
    count_throughput('failed', now)
    if attempts >= max_attempts then
      count_throughput('dead', now)
      kill(id, wf, 'claimed', err, now, '')
    else
      redis.call('HSET', K_TASK .. id, 'error', err)
      make_ready(id, now)
    end
  end
end

local stale = redis.call('ZRANGEBYSCORE', K_LOCKS, '-inf', now, 'LIMIT', 0, batch)
for _, res in ipairs(stale) do live_lock(res, now) end -- drops the expired ones

local promoted = promote_due(now, batch)
keep_stats(now) -- the charts' queue depth sample and trim, once a minute (include/stats.lua)
local cascaded = continue_cascades(now)

local silent = redis.call('ZRANGEBYSCORE', K_AGENTS, '-inf', now, 'LIMIT', 0, batch)
local gone = 0
for _, agent in ipairs(silent) do
  if redis.call('SCARD', K_HELD .. agent) > 0 or redis.call('SCARD', K_AGENT_LOCKS .. agent) > 0 then
    renew_presence(agent, now, 0) -- silent, but it holds work: it is working, not gone
  else
    leave(agent, now, 'agent.gone')
    gone = gone + 1
  end
end

-- Index entries past the retention, a batch of each: a burst of deaths must not return as one long call.
local horizon = now - RETENTION_MS
local forgotten = 0
for _, index in ipairs({ K_DEAD, K_AGENTS_GONE }) do
  local old = redis.call('ZRANGEBYSCORE', index, '-inf', horizon, 'LIMIT', 0, batch)
  if #old > 0 then redis.call('ZREM', index, unpack(old)) end
  forgotten = math.max(forgotten, #old)
end
-- Workflows created before the horizon leave the index once their record has expired. Those still
-- running stay, so the look goes on from where the last sweep stopped, a page a sweep: from the score
-- (creation ms) the last page ended on (counters.wf_scan), past the `wf_skip` workflows of that score it
-- already looked at (several are often created in one millisecond; Redis orders them by id).
local from = redis.call('HGET', K_COUNTERS, 'wf_scan') or '-inf'
local skip = tonumber(redis.call('HGET', K_COUNTERS, 'wf_skip') or '0')
local page = redis.call('ZRANGEBYSCORE', K_WORKFLOWS, from, horizon, 'WITHSCORES', 'LIMIT', skip, batch)
local last, kept_at_last = page[#page], 0
for i = 1, #page, 2 do
  local gone = redis.call('EXISTS', K_WF .. page[i]) == 0
  if gone then redis.call('ZREM', K_WORKFLOWS, page[i]) end
  if page[i + 1] == last and not gone then kept_at_last = kept_at_last + 1 end
end
if #page < 2 * batch then
  redis.call('HDEL', K_COUNTERS, 'wf_scan', 'wf_skip')
else
  if page[2] == last and from == last then kept_at_last = kept_at_last + skip end  -- still the same ms
  redis.call('HSET', K_COUNTERS, 'wf_scan', last, 'wf_skip', kept_at_last)
end

-- Inbox quotas: the inboxes of agents gone silent start to expire (idle); idle inboxes whose time is
-- up are forgotten; past IDLE_INBOXES_MAX, the soonest to expire are dropped now.
forget_expired_inboxes(now, batch)
local idle_over = math.min(redis.call('ZCARD', K_INBOXES_IDLE) - IDLE_INBOXES_MAX, batch)
if idle_over > 0 then
  for _, agent in ipairs(redis.call('ZRANGE', K_INBOXES_IDLE, 0, idle_over - 1)) do drop_inbox(agent) end
end

local more = (#expired == batch or #stale == batch or promoted == batch or #silent == batch
  or forgotten == batch or redis.call('LLEN', K_CASCADE) > 0) and '1' or '0'
return { 'ok', reclaimed, promoted, gone, more, #stale, cascaded }
