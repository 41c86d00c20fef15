-- create_workflow: a DAG of tasks created at once; tasks without dependencies start ready. Its loops are
-- bounded by MAX_WORKFLOW_TASKS (checked by workflows.py), and since its tasks depend only on one another,
-- none of them can reach MAX_DEPENDENTS here.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, agent, idempotency scope ('' = none), title,
--       spec (JSON list of {key, title, desc, cap, prio, max_attempts, assignee (absent or '' = none),
--       deps: [1-based positions]},
--       already checked: keys unique, positions valid, no cycle), then one payload (JSON text) per task
-- returns: {'ok', result_json} | {'duplicate', first_result_json} | {'invalid_argument', message, hint}
--@include keys.lua
--@include common.lua
--@include attempts.lua
--@include tasks.lua

local agent, idem, title = ARGV[4], ARGV[5], ARGV[6]
local spec = cjson.decode(ARGV[7])

if idem ~= '' then
  local first = redis.call('GET', K_IDEM .. idem)
  if first then return { 'duplicate', first } end
end

-- Quota: at most TASKS_MAX unfinished tasks per namespace (counters.open, kept by set_state), and
-- TASKS_MAX_PER_OWNER of the call's owner (owned_tasks:, kept by set_state too).
local open = tonumber(redis.call('HGET', K_COUNTERS, 'open') or 0)
if open + #spec > TASKS_MAX then
  return { 'invalid_argument', 'this namespace holds ' .. open .. ' unfinished tasks and keeps at most ' ..
    TASKS_MAX .. '; the workflow\'s ' .. #spec .. ' tasks were not created', 'Let workers finish (or ' ..
    'cancel) queued tasks first, or ask the operator to raise AGENTBUS_TASKS_MAX.' }
end
local owner = owner_for(agent)
local over = over_task_share(owner, #spec, 'the workflow\'s ' .. #spec .. ' tasks were not created')
if over then return over end

local now = now_ms()
local wf = 'wf-' .. redis.call('HINCRBY', K_COUNTERS, 'workflow', 1)
local ids, dependents = {}, {}
for i = 1, #spec do
  ids[i] = 't-' .. redis.call('HINCRBY', K_COUNTERS, 'task', 1)
  dependents[i] = {}
end
for i, t in ipairs(spec) do
  for _, d in ipairs(t.deps) do table.insert(dependents[d], ids[i]) end
end

redis.call('HSET', K_WF .. wf, 'id', wf, 'title', title, 'status', 'running', 'created', now,
  'creator', agent, 'total', #spec, 'tasks', table.concat(ids, ','))
redis.call('ZADD', K_WORKFLOWS, now, wf)
emit('workflow.created', agent, { workflow = wf, title = title, tasks = #spec })

local task_ids, ready = {}, {}
for i, t in ipairs(spec) do
  local id, deps = ids[i], {}
  for _, d in ipairs(t.deps) do deps[#deps + 1] = ids[d] end
  task_ids[t.key] = id
  redis.call('HSET', K_TASK .. id, 'id', id, 'key', t.key, 'wf', wf, 'title', t.title, 'desc', t.desc,
    'cap', t.cap, 'prio', t.prio, 'payload', ARGV[7 + i], 'deps', table.concat(deps, ','),
    'dependents', table.concat(dependents[i], ','), 'pending', #deps, 'attempts', 0,
    'max_attempts', t.max_attempts, 'fence', 0, 'created', now, 'creator', agent, 'owned_by', owner)
  local assignee = t.assignee or ''
  if assignee ~= '' then redis.call('HSET', K_TASK .. id, 'assignee', assignee) end
  if #deps == 0 then
    make_ready(id, now)
    ready[#ready + 1] = t.key
  else
    set_state(id, wf, nil, 'blocked', now)
  end
  emit('task.created', agent, { task = id, key = t.key, workflow = wf, title = t.title,
    capability = t.cap, priority = t.prio, state = #deps == 0 and 'ready' or 'blocked',
    assignee = assignee ~= '' and assignee or nil })
end

local result = cjson.encode({ workflow_id = wf, task_ids = task_ids, ready = ready })
if idem ~= '' then redis.call('SET', K_IDEM .. idem, result, 'PX', RETENTION_MS) end
return { 'ok', result }
