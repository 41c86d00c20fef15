-- The attempt record of a task and the ends of its leases, shared by the task scripts (needs keys.lua and
-- common.lua; tasks.lua, included after it, ends leases and expires records through it).

-- Each claim of a task is recorded in `attempts:<id>` (the dashboard's task detail): who held it and
-- since when, then how and when the attempt ended ('done', 'failed' with its error, 'expired',
-- 'cancelled', 'released'). Only the newest ATTEMPTS_KEPT stay: max_attempts bounds the attempts of one
-- run, but every retry_task starts a new run. The list expires and persists with its task record.
local ATTEMPTS_KEPT = 20
local ATTEMPT_ERROR_BYTES = 300 -- of an ended attempt's error (the task keeps its last one whole)

local function begin_attempt(id, attempt, fence, agent, now)
  redis.call('RPUSH', K_ATTEMPTS .. id, cjson.encode({ attempt = attempt, fence = fence, holder = agent,
    claimed = now }))
  redis.call('LTRIM', K_ATTEMPTS .. id, -ATTEMPTS_KEPT, -1)
end

local function end_attempt(id, how, now, err)
  local last = redis.call('LINDEX', K_ATTEMPTS .. id, -1)
  if not last then return end -- claimed before attempts were recorded
  local entry = cjson.decode(last)
  if entry.ended then return end
  entry.ended, entry.outcome = now, how
  if err and #err > ATTEMPT_ERROR_BYTES then -- cut on a character boundary: a cut UTF-8 sequence goes too
    err = (string.gsub(string.sub(err, 1, ATTEMPT_ERROR_BYTES), '[\192-\255][\128-\191]*$', ''))
  end
  entry.error = err
  redis.call('LSET', K_ATTEMPTS .. id, -1, cjson.encode(entry))
end

-- A task's record and its attempts expire together (a final task after the retention) or not at all.
local function expire_task(id)
  redis.call('PEXPIRE', K_TASK .. id, RETENTION_MS)
  redis.call('PEXPIRE', K_ATTEMPTS .. id, RETENTION_MS)
end

local function persist_task(id)
  redis.call('PERSIST', K_TASK .. id)
  redis.call('PERSIST', K_ATTEMPTS .. id)
end

-- A lease ends: `how` the attempt ended (end_attempt) is recorded with it.
local function drop_lease(id, owner, how, now, err)
  end_attempt(id, how, now, err)
  redis.call('HDEL', K_TASK .. id, 'token', 'owner', 'lease_exp')
  redis.call('ZREM', K_LEASES, id)
  if owner and owner ~= '' then redis.call('SREM', K_HELD .. owner, id) end
end
