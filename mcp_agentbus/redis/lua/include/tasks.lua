-- Task state changes shared by the task scripts (needs keys.lua and common.lua).

local PRIORITY_RANK = { urgent = 0, high = 1, normal = 2, low = 3 }
local PRIORITY_SPAN = 4294967296 -- 2^32 FIFO sequence numbers per priority

local FINAL = { done = true, dead = true, cancelled = true }

-- Every state change goes through here so workflow counters, `counters.open` (unfinished tasks,
-- bounded by TASKS_MAX at creation) and the unfinished tasks of the task's owner (`owned_tasks:`, set
-- at creation as the task's `owned_by`) stay exact.
local function set_state(id, wf, old, new, now)
  redis.call('HSET', K_TASK .. id, 'state', new, 'updated', now)
  local was_open, is_open = (old and old ~= '' and not FINAL[old]) and true or false, not FINAL[new]
  if was_open ~= is_open then
    -- (tasks created before this count existed finish without having been counted: never below 0)
    if redis.call('HINCRBY', K_COUNTERS, 'open', is_open and 1 or -1) < 0 then
      redis.call('HSET', K_COUNTERS, 'open', 0)
    end
    local owner = redis.call('HGET', K_TASK .. id, 'owned_by')
    if owner and is_open then redis.call('ZADD', K_OWNED_TASKS .. owner, '+inf', id)
    elseif owner then redis.call('ZREM', K_OWNED_TASKS .. owner, id) end
  end
  if wf and wf ~= '' then
    if old and old ~= '' then redis.call('HINCRBY', K_WF .. wf, 'n:' .. old, -1) end
    redis.call('HINCRBY', K_WF .. wf, 'n:' .. new, 1)
  end
end

-- The refusal of `count` new tasks past `owner`'s share of unfinished tasks; nil when they fit.
local function over_task_share(owner, count, refused)
  local has = redis.call('ZCARD', K_OWNED_TASKS .. owner)
  if has + count <= TASKS_MAX_PER_OWNER then return nil end
  return over_share(owner, has, TASKS_MAX_PER_OWNER, 'unfinished tasks', refused, 'Let workers finish ' ..
    '(or cancel) tasks you created first.', 'TASKS_MAX_PER_OWNER')
end

local function make_ready(id, now)
  local cap, prio, wf, state = unpack(redis.call('HMGET', K_TASK .. id, 'cap', 'prio', 'wf', 'state'))
  local seq = redis.call('HINCRBY', K_COUNTERS, 'seq', 1)
  redis.call('ZADD', K_READY .. cap, PRIORITY_RANK[prio] * PRIORITY_SPAN + seq, id)
  redis.call('HINCRBY', K_COUNTERS, 'ready:' .. cap, 1)
  redis.call('HDEL', K_TASK .. id, 'due')
  set_state(id, wf, state, 'ready', now)
  wake('task:' .. cap)
end

local function make_delayed(id, wf, old, due, now)
  redis.call('HSET', K_TASK .. id, 'due', due)
  redis.call('ZADD', K_DELAYED, due, id)
  set_state(id, wf, old, 'delayed', now)
end

-- A task that became eligible (created, unblocked, retried) waits out its due time, if any.
local function release(id, wf, old, due, now)
  if due > now then make_delayed(id, wf, old, due, now) else make_ready(id, now) end
end

local function promote_due(now, limit)
  local ids = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    redis.call('ZREM', K_DELAYED, id)
    local state, wf = unpack(redis.call('HMGET', K_TASK .. id, 'state', 'wf'))
    if state == 'delayed' then
      make_ready(id, now)
      emit('task.ready', '', { task = id, workflow = wf })
    end
  end
  return #ids
end

local function drop_lease(id, owner)
  redis.call('HDEL', K_TASK .. id, 'token', 'owner', 'lease_exp')
  redis.call('ZREM', K_LEASES, id)
  if owner and owner ~= '' then redis.call('SREM', K_HELD .. owner, id) end
end

local PROGRESS_FIELDS = { 'total', 'n:blocked', 'n:ready', 'n:delayed', 'n:claimed', 'n:done', 'n:dead',
  'n:cancelled', 'status' }

local function progress(wf)
  if not wf or wf == '' then return {} end
  return redis.call('HMGET', K_WF .. wf, unpack(PROGRESS_FIELDS))
end

-- After a task reached a terminal state: finish its workflow when nothing is left to run, and
-- let finished records expire after the retention.
local function settle(id, wf, now)
  if not wf or wf == '' then
    redis.call('PEXPIRE', K_TASK .. id, RETENTION_MS)
    return
  end
  local total, done, dead, cancelled, status, tasks = unpack(redis.call('HMGET', K_WF .. wf, 'total', 'n:done',
    'n:dead', 'n:cancelled', 'status', 'tasks'))
  total, done = tonumber(total), tonumber(done or 0)
  dead, cancelled = tonumber(dead or 0), tonumber(cancelled or 0)
  if status ~= 'running' or done + dead + cancelled < total then return end
  status = (done == total) and 'done' or 'failed'
  redis.call('HSET', K_WF .. wf, 'status', status, 'finished', now)
  emit('workflow.finished', '', { workflow = wf, status = status, done = done, dead = dead,
    cancelled = cancelled })
  redis.call('PEXPIRE', K_WF .. wf, RETENTION_MS)
  for _, tid in ipairs(split(tasks)) do redis.call('PEXPIRE', K_TASK .. tid, RETENTION_MS) end
end

-- 1234567 as '1,234,567', for messages.
local function thousands(n)
  local text = tostring(math.floor(n)):reverse():gsub('(%d%d%d)', '%1,'):reverse()
  return (text:gsub('^,', ''))
end

-- Cascades: a dead task cancels everything downstream of it, a done one unblocks its dependents. One
-- script call examines at most `cascade_budget` dependents; the rest waits in K_CASCADE as entries
-- '<kind>:<task id>:<dependents of it already examined>' (kind 'k' cancels, 'u' unblocks), and the reaper
-- continues it. Nothing an agent could act on is half-done meanwhile: a task whose cancellation waits is
-- still blocked on a dead task, which never counts as done, so it cannot become ready or be claimed, and
-- its workflow cannot finish before it is cancelled; one whose unblocking waits is merely blocked longer.
local CASCADE_BATCH = 100
local cascade_budget = CASCADE_BATCH -- what is left of this call's; the reaper sets its own batch

-- Why the dependents of `id` are cancelled: it is dead, or it was cancelled for that same reason. nil
-- when it is neither (any more): then nothing below it is cancelled on its account.
local function cancel_reason(id)
  local state, err = unpack(redis.call('HMGET', K_TASK .. id, 'state', 'error'))
  if state == 'dead' then return 'dependency ' .. id .. ' is dead: ' .. (err or '') end
  if state == 'cancelled' then return err or '' end
  return nil
end

-- Work through cascade `entry` and what it leads to, as far as the budget goes; what is left is queued.
-- Returns the tasks it cancelled or unblocked, and whether any of it was left. `continued`: the reaper's continuation, which also writes
-- task.ready for what it unblocks (complete_task reports those in its own result).
local function cascade(entry, now, agent, continued)
  local touched, queue, i = {}, { entry }, 1
  while i <= #queue and cascade_budget > 0 do
    local kind, id, from = string.match(queue[i], '^(%a):([^:]+):(%d+)$')
    from = tonumber(from)
    local reason = kind == 'k' and cancel_reason(id)
    local deps = (kind == 'u' or reason) and split(redis.call('HGET', K_TASK .. id, 'dependents')) or {}
    local upto = math.min(#deps, from + cascade_budget)
    for n = from + 1, upto do
      local dep = deps[n]
      if kind == 'u' then
        local state, wf, due = unpack(redis.call('HMGET', K_TASK .. dep, 'state', 'wf', 'due'))
        if state == 'blocked' and redis.call('HINCRBY', K_TASK .. dep, 'pending', -1) <= 0 then
          due = tonumber(due or 0)
          release(dep, wf, 'blocked', due, now)
          touched[#touched + 1] = dep
          if continued and due <= now then emit('task.ready', '', { task = dep, workflow = wf }) end
        end
      else
        local state, wf, its_dependents = unpack(redis.call('HMGET', K_TASK .. dep, 'state', 'wf',
          'dependents'))
        if state == 'blocked' then
          redis.call('HSET', K_TASK .. dep, 'error', reason)
          set_state(dep, wf, 'blocked', 'cancelled', now)
          emit('task.cancelled', agent, { task = dep, workflow = wf, reason = reason })
          touched[#touched + 1] = dep
          if its_dependents and its_dependents ~= '' then queue[#queue + 1] = 'k:' .. dep .. ':0' end
          settle(dep, wf, now)
        end
      end
    end
    cascade_budget = cascade_budget - math.max(1, upto - from)
    if upto < #deps then queue[i] = kind .. ':' .. id .. ':' .. upto else i = i + 1 end
  end
  for j = i, #queue do redis.call('RPUSH', K_CASCADE, queue[j]) end
  return touched, i <= #queue
end

local function unblock_dependents(id, now)
  return cascade('u:' .. id .. ':0', now, '', false)
end

-- Terminal failure: the task is dead and everything downstream of it is cancelled with the reason.
local function kill(id, wf, old, err, now, agent)
  redis.call('HSET', K_TASK .. id, 'error', err)
  set_state(id, wf, old, 'dead', now)
  redis.call('ZADD', K_DEAD, now, id)
  emit('task.dead', agent, { task = id, workflow = wf, error = err })
  local cancelled, left = cascade('k:' .. id .. ':0', now, agent, false)
  settle(id, wf, now)
  return cancelled, left
end

-- The reaper's part: continue queued cascades with what is left of the budget. Returns how many tasks
-- were cancelled or unblocked.
local function continue_cascades(now)
  local count = 0
  while cascade_budget > 0 do
    local entry = redis.call('LPOP', K_CASCADE)
    if not entry then break end
    local touched = cascade(entry, now, '', true)
    count = count + #touched
  end
  return count
end
