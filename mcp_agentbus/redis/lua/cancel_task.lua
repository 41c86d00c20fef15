-- cancel_task: cancel one task, or every task of a workflow that is not final (at most
-- MAX_WORKFLOW_TASKS, checked when they were created), and everything downstream of each (cascades
-- within the shared budget; the reaper continues what is left, see include/tasks.lua). A claimed task's
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

local cancelled, already_final, mine, more = {}, {}, {}, false
for _, tid in ipairs(ids) do
  local state = redis.call('HGET', K_TASK .. tid, 'state')
  if mine[tid] or not state then -- cancelled above by a cascade of this call; or its record expired
  elseif FINAL[state] then
    already_final[#already_final + 1] = tid
  else
    mine[tid] = true
    cancelled[#cancelled + 1] = tid
    local downstream, left = cancel(tid, reason, short_reason, now, agent)
    for _, dep in ipairs(downstream) do
      if not mine[dep] then
        mine[dep] = true
        cancelled[#cancelled + 1] = dep
      end
    end
    more = more or left
  end
end

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
