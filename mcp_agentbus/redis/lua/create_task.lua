-- create_task: add one task, blocked on its dependencies, delayed, or ready. Refused when its workflow
-- already has max_workflow_tasks tasks, when a dependency already has max_dependents dependents (which
-- bounds the work of completing or killing that one), or when the results of its dependencies that are
-- done already exceed max_inputs_bytes (its claim would carry them all).
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, agent, idempotency scope ('' = none), title, description,
--       capability, priority, payload (JSON text), depends_on (comma ids), workflow_id ('' = none),
--       max_attempts, delay_ms, max_workflow_tasks, max_dependents, max_inputs_bytes, assignee ('' = none:
--       any agent of the capability may claim it; else only that agent, which need not be live)
-- returns: {'ok', result_json} | {'duplicate', first_result_json}
--          | {'not_found' | 'wrong_state' | 'invalid_argument' | 'payload_too_large', message[, hint]}
--@include keys.lua
--@include common.lua
--@include attempts.lua
--@include tasks.lua

local agent, idem, title, desc, cap, prio, payload, deps_csv, wf = unpack(ARGV, 4, 12)
local max_attempts, delay_ms = tonumber(ARGV[13]), tonumber(ARGV[14])
local max_tasks, max_dependents, max_inputs = tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17])
local assignee = ARGV[18]

if idem ~= '' then
  local first = redis.call('GET', K_IDEM .. idem)
  if first then return { 'duplicate', first } end
end

-- Quota: at most TASKS_MAX unfinished tasks per namespace (counters.open, kept by set_state), and
-- TASKS_MAX_PER_OWNER of the call's owner (owned_tasks:, kept by set_state too).
if tonumber(redis.call('HGET', K_COUNTERS, 'open') or 0) >= TASKS_MAX then
  return { 'invalid_argument', 'this namespace holds ' .. TASKS_MAX .. ' unfinished tasks, the most it ' ..
    'keeps; the task was not created', 'Let workers finish (or cancel) queued tasks first, or ask the ' ..
    'operator to raise AGENTBUS_TASKS_MAX.' }
end
local owner = owner_for(agent)
local over = over_task_share(owner, 1, 'the task was not created')
if over then return over end

if wf ~= '' then
  local status, total = unpack(redis.call('HMGET', K_WF .. wf, 'status', 'total'))
  if not status then return { 'not_found', 'workflow ' .. wf .. ' does not exist' } end
  if status ~= 'running' then return { 'wrong_state', 'workflow ' .. wf .. ' is already ' .. status } end
  if tonumber(total) >= max_tasks then
    return { 'invalid_argument', 'workflow ' .. wf .. ' already has ' .. total .. ' tasks, the most a workflow '
      .. 'may have', 'Create this task without workflow_id, or start a new workflow with create_workflow; '
      .. 'depends_on may name tasks of any workflow.' }
  end
end

local deps, waiting, inputs = split(deps_csv), {}, 0
for _, dep in ipairs(deps) do
  local state, its_dependents = unpack(redis.call('HMGET', K_TASK .. dep, 'state', 'dependents'))
  if not state then return { 'invalid_argument', 'depends_on names unknown task ' .. dep } end
  if state == 'dead' or state == 'cancelled' then
    return { 'wrong_state', 'dependency ' .. dep .. ' is ' .. state .. ', so this task could never run' }
  end
  if state == 'done' then
    local size = redis.call('HSTRLEN', K_TASK .. dep, 'result')
    inputs = inputs + (size > 0 and size or 4) -- a claim sends a missing result as null
  else
    local dependents = (its_dependents and its_dependents ~= '')
      and select(2, string.gsub(its_dependents, ',', '')) + 1 or 0
    if dependents >= max_dependents then
      return { 'invalid_argument', 'task ' .. dep .. ' already has ' .. thousands(dependents)
        .. ' dependents, the most one task may have', 'Let fewer tasks wait for ' .. dep .. ' directly: '
        .. 'make these depend on one of its dependents (which can pass its result on), or split the work '
        .. 'differently.' }
    end
    waiting[#waiting + 1] = dep
  end
end
if inputs > max_inputs then
  return { 'payload_too_large', 'the results of the tasks in depends_on total ' .. thousands(inputs)
    .. ' bytes of JSON, over the ' .. thousands(max_inputs) .. ' bytes a claim may carry as inputs',
    'Depend on fewer of them, or have them store large results elsewhere (a file, a URL) and pass a '
    .. 'reference.' }
end

local now = now_ms()
local id = 't-' .. redis.call('HINCRBY', K_COUNTERS, 'task', 1)
local due = delay_ms > 0 and now + delay_ms or 0
redis.call('HSET', K_TASK .. id, 'id', id, 'wf', wf, 'title', title, 'desc', desc, 'cap', cap,
  'prio', prio, 'payload', payload, 'deps', deps_csv, 'pending', #waiting, 'attempts', 0,
  'max_attempts', max_attempts, 'fence', 0, 'created', now, 'creator', agent, 'due', due, 'in_bytes', inputs,
  'owned_by', owner)
if assignee ~= '' then redis.call('HSET', K_TASK .. id, 'assignee', assignee) end
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
  priority = prio, state = state, assignee = assignee ~= '' and assignee or nil })

local result = cjson.encode({ task_id = id, state = state })
if idem ~= '' then redis.call('SET', K_IDEM .. idem, result, 'PX', RETENTION_MS) end
return { 'ok', result }
