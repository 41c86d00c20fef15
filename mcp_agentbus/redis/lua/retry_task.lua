-- retry_task: a dead or cancelled task runs again: ready (or blocked while a dependency is not done),
-- a fresh attempt budget (attempts from 0 to max_attempts again), its fence still growing, out of the
-- dead index, its record (and its workflow's, running again) no longer expiring. The tasks that were
-- cancelled because of it come back too, transitively (cascade 'r' within the shared budget; the reaper
-- continues it, see include/tasks.lua). Its dependencies are at most MAX_DEPENDENCIES.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, agent, idempotency scope ('' = none),
--       task_id, reason
-- returns: {'ok', result_json} | {'duplicate', first_result_json} | {'not_found' | 'wrong_state', message[, hint]}
--          result_json: {task_id, state, restored: [task id, ...], more: true when restoring further
--          dependents was left to the reaper}
--@include keys.lua
--@include common.lua
--@include attempts.lua
--@include tasks.lua

local agent, idem, id, reason = ARGV[4], ARGV[5], ARGV[6], ARGV[7]

if idem ~= '' then
  local first = redis.call('GET', K_IDEM .. idem)
  if first then return { 'duplicate', first } end
end

local state, wf, deps, dependents = unpack(redis.call('HMGET', K_TASK .. id, 'state', 'wf', 'deps', 'dependents'))
if not state then
  return { 'not_found', 'task ' .. id .. ' does not exist (or ended longer ago than the retention)' }
end
if not FAILED[state] then
  return { 'wrong_state', 'task ' .. id .. ' is ' .. state .. '; only a dead or cancelled task can be retried',
    state == 'done' and 'It succeeded: create a new task for more work.'
      or 'It has not ended: let it run, or cancel_task it first to start it over.' }
end
for _, dep in ipairs(split(deps)) do
  local dep_state = redis.call('HGET', K_TASK .. dep, 'state')
  if not dep_state then
    return { 'wrong_state', 'dependency ' .. dep .. ' of task ' .. id .. ' no longer exists (it ended longer ago '
      .. 'than the retention), so ' .. id .. ' could never run', 'Create a new task for this work instead.' }
  end
  if FAILED[dep_state] then
    return { 'wrong_state', 'dependency ' .. dep .. ' of task ' .. id .. ' is ' .. dep_state .. ', so ' .. id ..
      ' could never run', 'retry_task ' .. dep .. ' first: the tasks cancelled because of it come back with it.' }
  end
end

local now = now_ms()
redis.call('HSET', K_TASK .. id, 'attempts', 0)
redis.call('HDEL', K_TASK .. id, 'failed_token', 'failed_outcome')
redis.call('ZREM', K_DEAD, id)
requeue(id, wf, state, now, agent)
local new_state = redis.call('HGET', K_TASK .. id, 'state')
emit('task.retried', agent, { task = id, workflow = wf, reason = reason, was = state, state = new_state })
local restored, more = {}, false
if dependents and dependents ~= '' then restored, more = cascade('r:' .. id .. ':0:' .. id, now, agent, false) end

local result = cjson.encode({ task_id = id, state = new_state, restored = restored, more = more })
if idem ~= '' then redis.call('SET', K_IDEM .. idem, result, 'PX', RETENTION_MS) end
return { 'ok', result }
