-- create_task: add one task, blocked on its dependencies, delayed, or ready.
-- KEYS: the namespace layout (include/keys.lua)
-- ARGV: events_max, retention_ms, notices_for, agent, idempotency scope ('' = none), title, description,
--       capability, priority, payload (JSON text), depends_on (comma ids), workflow_id ('' = none),
--       max_attempts, delay_ms
-- returns: {'ok', result_json} | {'duplicate', first_result_json}
--          | {'not_found' | 'wrong_state' | 'invalid_argument', message[, hint]}
--@include keys.lua
--@include common.lua
--@include tasks.lua

local agent, idem, title, desc, cap, prio, payload, deps_csv, wf = unpack(ARGV, 4, 12)
local max_attempts, delay_ms = tonumber(ARGV[13]), tonumber(ARGV[14])

if idem ~= '' then
  local first = redis.call('GET', K_IDEM .. idem)
  if first then return { 'duplicate', first } end
end

-- Quota: at most TASKS_MAX unfinished tasks per namespace (counters.open, kept by set_state).
if tonumber(redis.call('HGET', K_COUNTERS, 'open') or 0) >= TASKS_MAX then
  return { 'invalid_argument', 'this namespace holds ' .. TASKS_MAX .. ' unfinished tasks, the most it ' ..
    'keeps; the task was not created', 'Let workers finish (or cancel) queued tasks first, or ask the ' ..
    'operator to raise AGENTBUS_TASKS_MAX.' }
end

if wf ~= '' then
  local status = redis.call('HGET', K_WF .. wf, 'status')
  if not status then return { 'not_found', 'workflow ' .. wf .. ' does not exist' } end
  if status ~= 'running' then return { 'wrong_state', 'workflow ' .. wf .. ' is already ' .. status } end
end

local deps, waiting = split(deps_csv), {}
for _, dep in ipairs(deps) do
  local state = redis.call('HGET', K_TASK .. dep, 'state')
  if not state then return { 'invalid_argument', 'depends_on names unknown task ' .. dep } end
  if state == 'dead' or state == 'cancelled' then
    return { 'wrong_state', 'dependency ' .. dep .. ' is ' .. state .. ', so this task could never run' }
  end
  if state ~= 'done' then waiting[#waiting + 1] = dep end
end

local now = now_ms()
local id = 't-' .. redis.call('HINCRBY', K_COUNTERS, 'task', 1)
local due = delay_ms > 0 and now + delay_ms or 0
redis.call('HSET', K_TASK .. id, 'id', id, 'wf', wf, 'title', title, 'desc', desc, 'cap', cap,
  'prio', prio, 'payload', payload, 'deps', deps_csv, 'pending', #waiting, 'attempts', 0,
  'max_attempts', max_attempts, 'fence', 0, 'created', now, 'creator', agent, 'due', due)
for _, dep in ipairs(waiting) do
  local before = redis.call('HGET', K_TASK .. dep, 'dependents')
  redis.call('HSET', K_TASK .. dep, 'dependents', (before and before ~= '') and (before .. ',' .. id) or id)
end
if wf ~= '' then
  local tasks = redis.call('HGET', K_WF .. wf, 'tasks')
  redis.call('HSET', K_WF .. wf, 'tasks', (tasks and tasks ~= '') and (tasks .. ',' .. id) or id)
  redis.call('HINCRBY', K_WF .. wf, 'total', 1)
end

if #waiting > 0 then
  set_state(id, wf, nil, 'blocked', now)
else
  release(id, wf, nil, due, now)
end
local state = redis.call('HGET', K_TASK .. id, 'state')
emit('task.created', agent, { task = id, workflow = wf, title = title, capability = cap,
  priority = prio, state = state })

local result = cjson.encode({ task_id = id, state = state })
if idem ~= '' then redis.call('SET', K_IDEM .. idem, result, 'PX', RETENTION_MS) end
return { 'ok', result }
