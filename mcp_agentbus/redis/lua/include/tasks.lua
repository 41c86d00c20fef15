-- Task state changes shared by the task scripts (needs keys.lua, common.lua and attempts.lua).

local PRIORITY_RANK = { urgent = 0, high = 1, normal = 2, low = 3 }
local PRIORITY_SPAN = 4294967296 -- 2^32 FIFO sequence numbers per priority

local FINAL = { done = true, dead = true, cancelled = true }
local FAILED = { dead = true, cancelled = true } -- final, and never done: what retry_task takes

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

-- A ready task waits in its capability's queue, or, when it has an assignee, in that agent's own
-- (`assigned:`), which only the assignee's claims look at; both are scored alike (priority, then FIFO).
local function make_ready(id, now)
  local cap, prio, wf, state, assignee = unpack(redis.call('HMGET', K_TASK .. id, 'cap', 'prio', 'wf', 'state',
    'assignee'))
  local score = PRIORITY_RANK[prio] * PRIORITY_SPAN + redis.call('HINCRBY', K_COUNTERS, 'seq', 1)
  if assignee then
    redis.call('ZADD', K_ASSIGNED .. assignee, score, id)
    wake('task:@' .. assignee)
  else
    redis.call('ZADD', K_READY .. cap, score, id)
    redis.call('HINCRBY', K_COUNTERS, 'ready:' .. cap, 1)
    wake('task:' .. cap)
    wake('task:*', 'task:' .. cap) -- for claimers of any capability
  end
  redis.call('HDEL', K_TASK .. id, 'due')
  set_state(id, wf, state, 'ready', now)
end

-- A ready task leaves its queue (claimed or cancelled). A capability's counter goes when its queue
-- empties, so claim_task's HGETALL of the counters reads only those with work.
local function unqueue(id, cap, assignee)
  if assignee then
    redis.call('ZREM', K_ASSIGNED .. assignee, id)
  elseif redis.call('ZREM', K_READY .. cap, id) == 1
    and redis.call('HINCRBY', K_COUNTERS, 'ready:' .. cap, -1) <= 0 then
    redis.call('HDEL', K_COUNTERS, 'ready:' .. cap)
  end
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

-- The refusal of a complete_task or fail_task whose lease is gone; a cancelled task says why.
local function lease_lost(id, state)
  local lost = 'your lease on task ' .. id .. ' is no longer valid'
  if state ~= 'cancelled' then return { 'lease_lost', lost .. ' (the task is now ' .. state .. ')' } end
  return { 'lease_lost', lost .. ' (the task was cancelled: ' .. (redis.call('HGET', K_TASK .. id, 'error') or '')
    .. ')', 'Nothing you send for it is recorded: stop work on it and claim other work.' }
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
    expire_task(id)
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
  for _, tid in ipairs(split(tasks)) do expire_task(tid) end
end

-- A task of a finished workflow runs again (retry_task): the workflow is running again, and its
-- records (at most MAX_WORKFLOW_TASKS tasks) stop expiring.
local function reopen(wf, agent)
  if not wf or wf == '' then return end
  local status, tasks = unpack(redis.call('HMGET', K_WF .. wf, 'status', 'tasks'))
  if not status or status == 'running' then return end
  redis.call('HSET', K_WF .. wf, 'status', 'running')
  redis.call('HDEL', K_WF .. wf, 'finished')
  redis.call('PERSIST', K_WF .. wf)
  for _, tid in ipairs(split(tasks)) do persist_task(tid) end
  emit('workflow.reopened', agent, { workflow = wf, was = status })
end

-- 1234567 as '1,234,567', for messages.
local function thousands(n)
  local text = tostring(math.floor(n)):reverse():gsub('(%d%d%d)', '%1,'):reverse()
  return (text:gsub('^,', ''))
end

-- Cascades: a dead or cancelled task cancels everything downstream of it, a done one unblocks its
-- dependents, a retried one restores those cancelled because of it. One script call examines at most
-- `cascade_budget` dependents; the rest waits in K_CASCADE as entries '<kind>:<task id>:<dependents of it
-- already examined>[:<root>]' (kind 'k' cancels, 'u' unblocks, 'r' restores what `root` cancelled), and
-- the reaper continues it. Nothing an agent could act on is half-done meanwhile: a task whose
-- cancellation waits is still blocked on a dead or cancelled task, which never counts as done, so it
-- cannot become ready or be claimed, and its workflow cannot finish before it is cancelled; one whose
-- unblocking or restoring waits is merely blocked (or cancelled) longer. A cascade goes on only while
-- its reason holds: a 'k' for a task retried meanwhile, or an 'r' for a root cancelled again, stops.
local CASCADE_BATCH = 100
local cascade_budget = CASCADE_BATCH -- what is left of this call's; the reaper sets its own batch

-- Why the dependents of `id` are cancelled: it is dead, or it was cancelled (for a reason of its own, or
-- because of a task upstream: then for that same reason). nil when it is neither (any more): then
-- nothing below it is cancelled on its account.
local function cancel_reason(id)
  local state, err, cause = unpack(redis.call('HMGET', K_TASK .. id, 'state', 'error', 'cause'))
  if state == 'dead' then return 'dependency ' .. id .. ' is dead: ' .. (err or '') end
  if state == 'cancelled' and cause then return err or '' end
  if state == 'cancelled' then return 'dependency ' .. id .. ' was cancelled: ' .. (err or '') end
  return nil
end

-- `dep`, blocked, is cancelled because `id` upstream of it is dead or cancelled (`reason`: cancel_reason),
-- for the same root: the task all of it goes back to, which a retry_task restores it with.
local function cancel_because(dep, wf, id, reason, now, agent)
  local root = redis.call('HGET', K_TASK .. id, 'cause') or id
  redis.call('HSET', K_TASK .. dep, 'error', reason, 'cause', root)
  set_state(dep, wf, 'blocked', 'cancelled', now)
  emit('task.cancelled', agent, { task = dep, workflow = wf, reason = reason })
  settle(dep, wf, now)
end

-- A retried task, or one cancelled because of it (its 'cause') that is restored with it, waits again:
-- blocked while any of its dependencies (at most MAX_DEPENDENCIES) is not done, else ready; its inputs
-- recounted (a result that came while it was cancelled counts too), its record and its workflow's no
-- longer expiring.
local function requeue(id, wf, old, now, agent)
  local pending, in_bytes = 0, 0
  for _, dep in ipairs(split(redis.call('HGET', K_TASK .. id, 'deps'))) do
    if redis.call('HGET', K_TASK .. dep, 'state') == 'done' then
      local size = redis.call('HSTRLEN', K_TASK .. dep, 'result')
      in_bytes = in_bytes + (size > 0 and size or 4) -- a claim sends a missing result as null
    else
      pending = pending + 1
    end
  end
  redis.call('HSET', K_TASK .. id, 'pending', pending, 'in_bytes', in_bytes)
  redis.call('HDEL', K_TASK .. id, 'cause', 'error') -- a fresh start
  persist_task(id)
  reopen(wf, agent)
  if pending > 0 then set_state(id, wf, old, 'blocked', now) else make_ready(id, now) end
end

-- Work through cascade `entry` and what it leads to, as far as the budget goes; what is left is queued.
-- Returns the tasks it cancelled, unblocked or restored, and whether any of it was left. `continued`:
-- the reaper's continuation, which also writes task.ready for what it unblocks (complete_task reports
-- those in its own result).
local function cascade(entry, now, agent, continued)
  local touched, queue, i = {}, { entry }, 1
  while i <= #queue and cascade_budget > 0 do
    local kind, id, from, root = string.match(queue[i], '^(%a):([^:]+):(%d+):?([^:]*)$')
    from = tonumber(from)
    local reason = kind == 'k' and cancel_reason(id)
    local restoring = kind == 'r' and not FAILED[redis.call('HGET', K_TASK .. root, 'state')]
    local deps = (kind == 'u' or reason or restoring) and split(redis.call('HGET', K_TASK .. id, 'dependents'))
      or {}
    local upto = math.min(#deps, from + cascade_budget)
    for n = from + 1, upto do
      local dep = deps[n]
      local state, wf, due, cause, its_dependents = unpack(redis.call('HMGET', K_TASK .. dep, 'state', 'wf',
        'due', 'cause', 'dependents'))
      if kind == 'u' then
        if state == 'blocked' and redis.call('HINCRBY', K_TASK .. dep, 'pending', -1) <= 0 then
          due = tonumber(due or 0)
          release(dep, wf, 'blocked', due, now)
          touched[#touched + 1] = dep
          if continued and due <= now then emit('task.ready', '', { task = dep, workflow = wf }) end
        end
      elseif kind == 'k' and state == 'blocked' then
        cancel_because(dep, wf, id, reason, now, agent)
        touched[#touched + 1] = dep
        if its_dependents and its_dependents ~= '' then queue[#queue + 1] = 'k:' .. dep .. ':0' end
      elseif kind == 'r' and state == 'cancelled' and cause == root then
        requeue(dep, wf, 'cancelled', now, agent)
        emit('task.restored', agent, { task = dep, workflow = wf, cause = root,
          state = redis.call('HGET', K_TASK .. dep, 'state') })
        touched[#touched + 1] = dep
        if its_dependents and its_dependents ~= '' then queue[#queue + 1] = 'r:' .. dep .. ':0:' .. root end
      end
    end
    cascade_budget = cascade_budget - math.max(1, upto - from)
    if upto < #deps then
      queue[i] = kind .. ':' .. id .. ':' .. upto .. (root ~= '' and (':' .. root) or '')
    else
      i = i + 1
    end
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

-- cancel_task: `id` (not final) is cancelled for `reason`, taken out of its queue or its holder's hands
-- (told at once, with `short_reason`: its waits end, its late complete_task gets lease_lost with the
-- reason), and everything downstream of it is cancelled too. Returns the dependents cancelled, and
-- whether cancelling more was left.
local function cancel(id, reason, short_reason, now, agent)
  local state, wf, owner, cap, assignee, dependents = unpack(redis.call('HMGET', K_TASK .. id, 'state', 'wf',
    'owner', 'cap', 'assignee', 'dependents'))
  if state == 'ready' then
    unqueue(id, cap, assignee)
  elseif state == 'delayed' then
    redis.call('ZREM', K_DELAYED, id)
  elseif state == 'claimed' then
    drop_lease(id, owner, 'cancelled', now, reason)
    tell_lost(owner, 'task ' .. id .. ' cancelled: ' .. short_reason)
  end
  redis.call('HSET', K_TASK .. id, 'error', reason)
  redis.call('HDEL', K_TASK .. id, 'cause', 'due')
  set_state(id, wf, state, 'cancelled', now)
  emit('task.cancelled', agent, { task = id, workflow = wf, reason = reason })
  local cancelled, left = {}, false
  if dependents and dependents ~= '' then cancelled, left = cascade('k:' .. id .. ':0', now, agent, false) end
  settle(id, wf, now)
  return cancelled, left
end

-- The reaper's part: continue queued cascades with what is left of the budget. Returns how many tasks
-- were cancelled, unblocked or restored.
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
