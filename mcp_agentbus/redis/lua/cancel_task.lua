-- cancel_task: cancel one task, or every task of a workflow that is not final (at most
-- MAX_WORKFLOW_TASKS, checked when they were created; upstream first, so a retry_task of the first
-- restores the rest), and everything downstream of each (cascades within the shared budget; the reaper
-- continues what is left, see include/tasks.lua). A claimed task's
-- lease is taken back at once and its holder told. A final task is left as it is and listed. A
-- cancelled workflow's status becomes 'cancelled' (workflow.finished); its records then expire after
-- the retention like any finished workflow's.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, agent, idempotency scope ('' = none),
--       task_id ('' when a workflow is cancelled), workflow_id ('' when one task is), reason, the reason
--       shortened for a holder's notice (core/control.py NOTICE_REASON characters: it bounds the lost-list)
-- returns: {'ok', result_json} | {'duplicate', first_result_json} | {'not_found', message}
--          result_json: {cancelled: [task id, ...], already_final: [task id, ...], more: true when
--          cancelling further dependents was left to the reaper}
--@include keys.lua
--@include common.lua
--@include attempts.lua
--@include tasks.lua

local agent, idem, id, wf, reason, short_reason = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]

if idem ~= '' then
  local first = redis.call('GET', K_IDEM .. idem)
  if first then return { 'duplicate', first } end
end

local now = now_ms()
local ids, status = { id }, nil
if wf ~= '' then
  local tasks
  status, tasks = unpack(redis.call('HMGET', K_WF .. wf, 'status', 'tasks'))
  if not status then
    return { 'not_found', 'workflow ' .. wf .. ' does not exist (or finished longer ago than the retention)' }
  end
  ids = split(tasks)
  -- settle() finishes only running workflows: this one is finished below, once all of it is cancelled
  if status == 'running' then redis.call('HSET', K_WF .. wf, 'status', 'cancelled', 'finished', now) end
elseif redis.call('EXISTS', K_TASK .. id) == 0 then
  return { 'not_found', 'task ' .. id .. ' does not exist (or ended longer ago than the retention)' }
end

-- A workflow's tasks, each after every task of it that it depends on (a task added to it later may
-- depend on others too), and those of them that a task outside it depends on.
local function upstream_first(tasks)
  local at, waits_for, unblocks, order, outside = {}, {}, {}, {}, {}
  for i, tid in ipairs(tasks) do at[tid], waits_for[i], unblocks[i] = i, 0, {} end
  for i, tid in ipairs(tasks) do
    local deps, dependents = unpack(redis.call('HMGET', K_TASK .. tid, 'deps', 'dependents'))
    for _, dep in ipairs(split(deps)) do
      if at[dep] then
        waits_for[i] = waits_for[i] + 1
        table.insert(unblocks[at[dep]], i)
      end
    end
    for _, dependent in ipairs(split(dependents)) do
      if not at[dependent] then outside[tid] = true end
    end
  end
  for i = 1, #tasks do if waits_for[i] == 0 then order[#order + 1] = i end end
  local n = 1
  while n <= #order do
    for _, j in ipairs(unblocks[order[n]]) do
      waits_for[j] = waits_for[j] - 1
      if waits_for[j] == 0 then order[#order + 1] = j end
    end
    order[n], n = tasks[order[n]], n + 1
  end
  return order, outside
end

-- The first dependency of blocked task `tid` that is dead or cancelled, and why that cancels `tid`.
local function failed_dependency(tid)
  for _, dep in ipairs(split(redis.call('HGET', K_TASK .. tid, 'deps'))) do
    local why = cancel_reason(dep)
    if why then return dep, why end
  end
  return nil
end

-- A workflow's tasks go upstream first, and one blocked on a task cancelled (or dead) is cancelled
-- because of it, as a cascade would: with its root as its cause, so that a retry_task of the root
-- restores all of it, however far past this call's cascade budget it reaches.
local outside = nil -- a single task's dependents may be anywhere
if wf ~= '' then ids, outside = upstream_first(ids) end
local cancelled, already_final, mine, more = {}, {}, {}, false
for _, tid in ipairs(ids) do
  local state = redis.call('HGET', K_TASK .. tid, 'state')
  local upstream, why
  if state == 'blocked' and wf ~= '' then upstream, why = failed_dependency(tid) end
  if mine[tid] or not state then -- cancelled above by a cascade of this call; or its record expired
  elseif FINAL[state] then
    already_final[#already_final + 1] = tid
  else
    mine[tid] = true
    cancelled[#cancelled + 1] = tid
    local downstream, left = {}, false
    if upstream then
      cancel_because(tid, wf, upstream, why, now, agent)
      -- those of its dependents in the workflow come later in this loop; a cascade reaches the others
      if outside[tid] then downstream, left = cascade('k:' .. tid .. ':0', now, agent, false) end
    else
      downstream, left = cancel(tid, reason, short_reason, now, agent)
    end
    for _, dep in ipairs(downstream) do
      if not mine[dep] then
        mine[dep] = true
        cancelled[#cancelled + 1] = dep
      end
    end
    more = more or left
  end
end
-- Every task of a workflow is cancelled by now: what a cascade left is for tasks outside it.
more = more and (outside == nil or next(outside) ~= nil)

if status == 'running' then
  local done, dead, n_cancelled = unpack(redis.call('HMGET', K_WF .. wf, 'n:done', 'n:dead', 'n:cancelled'))
  emit('workflow.finished', agent, { workflow = wf, status = 'cancelled', done = tonumber(done or 0),
    dead = tonumber(dead or 0), cancelled = tonumber(n_cancelled or 0), reason = reason })
  redis.call('PEXPIRE', K_WF .. wf, RETENTION_MS)
  for _, tid in ipairs(ids) do expire_task(tid) end
end

local result = cjson.encode({ cancelled = cancelled, already_final = already_final, more = more })
if idem ~= '' then redis.call('SET', K_IDEM .. idem, result, 'PX', RETENTION_MS) end
return { 'ok', result }
