-- complete_task: record the result of a leased task and unblock its dependents (a first batch; the
-- reaper continues the rest, see cascades in include/tasks.lua). A result that would make the inputs of
-- a blocked dependent (the results of all it depends on, which its claim carries) exceed max_inputs_bytes
-- is refused, nothing written and the lease kept; each dependent's 'in_bytes' counts its inputs so far.
-- KEYS: the namespace layout (keys.lua, generated from keys.LAYOUT)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, notices_for, agent, task_id, lease_token, result (JSON text), summary,
--       max_inputs_bytes
-- returns: {'ok', already ('1'|'0'), {unblocked id, ...}, workflow_id, {progress fields},
--           more ('1' when unblocking further dependents was left to the reaper)}
--        | {'not_found' | 'wrong_state' | 'lease_lost' | 'payload_too_large', message[, hint]}
--@include keys.lua
--@include common.lua
--@include tasks.lua

local agent, id, token, result, summary = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local max_inputs = tonumber(ARGV[9])
local f = redis.call('HMGET', K_TASK .. id, 'state', 'token', 'owner', 'wf', 'done_token', 'fence',
  'dependents')
if not f[1] then return { 'not_found', 'task ' .. id .. ' does not exist' } end
if f[1] == 'done' and f[5] == token then return { 'ok', '1', {}, f[4], progress(f[4]), '0' } end
if f[1] ~= 'claimed' and f[6] == '0' then
  return { 'wrong_state', 'task ' .. id .. ' has never been claimed (it is ' .. f[1] .. '); claim it first' }
end
if f[1] ~= 'claimed' or f[2] ~= token then
  return { 'lease_lost', 'your lease on task ' .. id .. ' is no longer valid (the task is now ' .. f[1] .. ')' }
end

-- At most MAX_DEPENDENTS dependents (create_task), each a read here and an increment below.
local receivers = {}
for _, dep in ipairs(split(f[7])) do
  local d = redis.call('HMGET', K_TASK .. dep, 'state', 'in_bytes')
  if d[1] == 'blocked' then
    local total = tonumber(d[2] or 0) + #result
    if total > max_inputs then
      return { 'payload_too_large', 'result is ' .. thousands(#result) .. ' bytes of JSON; with it the '
        .. 'inputs of dependent task ' .. dep .. ' (the results of the tasks it depends on, delivered with '
        .. 'its claim) would total ' .. thousands(total) .. ' bytes, over the limit of '
        .. thousands(max_inputs),
        'Nothing was recorded and your lease is kept: store the data elsewhere (a file, a URL) and call '
        .. 'complete_task again with a small result that references it.' }
    end
    receivers[#receivers + 1] = dep
  end
end

local now = now_ms()
drop_lease(id, f[3])
redis.call('HSET', K_TASK .. id, 'result', result, 'summary', summary, 'done_token', token,
  'completed_by', agent, 'finished', now)
redis.call('HDEL', K_TASK .. id, 'error')
for _, dep in ipairs(receivers) do redis.call('HINCRBY', K_TASK .. dep, 'in_bytes', #result) end
set_state(id, f[4], 'claimed', 'done', now)
emit('task.completed', agent, { task = id, workflow = f[4], summary = summary })
local unblocked, more = unblock_dependents(id, now)
settle(id, f[4], now)
return { 'ok', '0', unblocked, f[4], progress(f[4]), more and '1' or '0' }
