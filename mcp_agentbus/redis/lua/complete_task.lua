-- complete_task: record the result of a leased task and unblock its dependents (a first batch; the
-- reaper continues the rest, see cascades in include/tasks.lua). A result that would make the inputs of
-- a blocked dependent (the results of all it depends on, which its claim carries) exceed max_inputs_bytes
-- is refused, nothing written and the lease kept; each dependent's 'in_bytes' counts its inputs so far.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, agent, task_id, lease_token, result (JSON text), summary,
--       max_inputs_bytes
-- returns: {'ok', already ('1'|'0'), {unblocked id, ...}, workflow_id, {progress fields},
--           more ('1' when unblocking further dependents was left to the reaper)}
--        | {'not_found' | 'wrong_state' | 'lease_lost' | 'payload_too_large', message[, hint]}
--@include keys.lua
--@include stats.lua
--@include common.lua
--@include attempts.lua
--@include tasks.lua

local agent, id, token, result, summary = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local max_inputs = tonumber(ARGV[9])
local state, lease_token, owner, wf, done_token, fence, dependents = unpack(redis.call('HMGET', K_TASK .. id,
  'state', 'token', 'owner', 'wf', 'done_token', 'fence', 'dependents'))
if not state then return { 'not_found', 'task ' .. id .. ' does not exist' } end
if state == 'done' and done_token == token then return { 'ok', '1', {}, wf, progress(wf), '0' } end
if state ~= 'claimed' and fence == '0' then
  return { 'wrong_state', 'task ' .. id .. ' has never been claimed (it is ' .. state .. '); claim it first' }
end
if state ~= 'claimed' or lease_token ~= token then
  return lease_lost(id, state)
end

-- At most MAX_DEPENDENTS dependents (create_task), each a read here and an increment below.
local receivers = {}
for _, dep in ipairs(split(dependents)) do
  local dep_state, in_bytes = unpack(redis.call('HMGET', K_TASK .. dep, 'state', 'in_bytes'))
  if dep_state == 'blocked' then
    local total = tonumber(in_bytes or 0) + #result
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
drop_lease(id, owner, 'done', now)
redis.call('HSET', K_TASK .. id, 'result', result, 'summary', summary, 'done_token', token,
  'completed_by', agent, 'finished', now)
redis.call('HDEL', K_TASK .. id, 'error')
for _, dep in ipairs(receivers) do redis.call('HINCRBY', K_TASK .. dep, 'in_bytes', #result) end
set_state(id, wf, 'claimed', 'done', now)
emit('task.completed', agent, { task = id, workflow = wf, summary = summary })
count_throughput('done', now)
local unblocked, more = unblock_dependents(id, now)
settle(id, wf, now)
return { 'ok', '0', unblocked, wf, progress(wf), more and '1' or '0' }
