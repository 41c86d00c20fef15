-- complete_task: record the result of a leased task and unblock its dependents.
-- KEYS: the namespace layout (include/keys.lua)
-- ARGV: events_max, retention_ms, notices_for, agent, task_id, lease_token, result (JSON text), summary
-- returns: {'ok', already ('1'|'0'), {unblocked id, ...}, workflow_id, {progress fields}}
--        | {'not_found' | 'wrong_state' | 'lease_lost', message}
--@include keys.lua
--@include common.lua
--@include tasks.lua

local agent, id, token, result, summary = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local f = redis.call('HMGET', K_TASK .. id, 'state', 'token', 'owner', 'wf', 'done_token', 'fence')
if not f[1] then return { 'not_found', 'task ' .. id .. ' does not exist' } end
if f[1] == 'done' and f[5] == token then return { 'ok', '1', {}, f[4], progress(f[4]) } end
if f[1] ~= 'claimed' and f[6] == '0' then
  return { 'wrong_state', 'task ' .. id .. ' has never been claimed (it is ' .. f[1] .. '); claim it first' }
end
if f[1] ~= 'claimed' or f[2] ~= token then
  return { 'lease_lost', 'your lease on task ' .. id .. ' is no longer valid (the task is now ' .. f[1] .. ')' }
end

local now = now_ms()
drop_lease(id, f[3])
redis.call('HSET', K_TASK .. id, 'result', result, 'summary', summary, 'done_token', token,
  'completed_by', agent, 'finished', now)
redis.call('HDEL', K_TASK .. id, 'error')
set_state(id, f[4], 'claimed', 'done', now)
emit('task.completed', agent, { task = id, workflow = f[4], summary = summary })
local unblocked = unblock_dependents(id, now)
settle(id, f[4], now)
return { 'ok', '0', unblocked, f[4], progress(f[4]) }
