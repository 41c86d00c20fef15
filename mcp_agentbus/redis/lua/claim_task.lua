-- claim_task: lease the best ready task (priority, then FIFO) among the agent's capabilities,
-- or one named task. Ready tasks assigned to the agent (its `assigned:` queue) come before those of
-- its capabilities of the same priority, whatever capabilities the claim names; another agent never
-- gets them, not even by task_id. Refused while the agent already holds max_held leases, which bounds the work of its
-- heartbeat and notices. Its loops are bounded: capabilities by MAX_CAPABILITIES (at the tool edge), inputs
-- by MAX_DEPENDENCIES (and their bytes by MAX_INPUTS_BYTES, checked when the task was created and as its
-- dependencies completed); the counters it lists when nothing is ready are those of capabilities that
-- have ready tasks. A task named that the agent holds already is answered with the lease it holds (its
-- answer may have been lost on the way: a connection cut after the claim ran), and nothing changes.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, agent, lease_ms, lease_token, task_id ('' = best),
--       capabilities (comma list; '' = the agent's registered ones plus 'any'), max_held
-- returns: {'ok', id, key, workflow, title, description, payload, capability, priority, attempt,
--           max_attempts, fence, lease_token, expires_at_ms, {dep_key, dep_result, ...}}
--        | {'empty', {cap, ...}, delayed_count, next_due_ms | '', {cap, ready_count, ...}, now_ms}
--        | {'not_found' | 'wrong_state', message[, hint]}
--@include keys.lua
--@include common.lua
--@include attempts.lua
--@include tasks.lua

local agent, lease_ms, token, wanted, caps_csv = ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8]
local max_held = tonumber(ARGV[9])

-- The claim's answer: the task as its holder works on it, and the lease.
local function leased(id, attempt, fence, lease_token, expires)
  local key, wf, title, desc, payload, cap, prio, max_attempts, deps = unpack(redis.call('HMGET', K_TASK .. id,
    'key', 'wf', 'title', 'desc', 'payload', 'cap', 'prio', 'max_attempts', 'deps'))
  local inputs = {}
  for _, dep in ipairs(split(deps)) do
    local dep_key, dep_result = unpack(redis.call('HMGET', K_TASK .. dep, 'key', 'result'))
    inputs[#inputs + 1] = (dep_key and dep_key ~= '') and dep_key or dep
    inputs[#inputs + 1] = dep_result or 'null'
  end
  return { 'ok', id, key or '', wf, title, desc, payload, cap, prio, attempt, max_attempts, fence, lease_token,
    expires, inputs }
end

if wanted ~= '' then
  local held = redis.call('HMGET', K_TASK .. wanted, 'state', 'owner', 'attempts', 'fence', 'token', 'lease_exp')
  if held[1] == 'claimed' and held[2] == agent then
    return leased(wanted, tonumber(held[3]), tonumber(held[4]), held[5], tonumber(held[6]))
  end
end
local holding = redis.call('SCARD', K_HELD .. agent)
if holding >= max_held then
  return { 'wrong_state', 'agent ' .. agent .. ' already holds ' .. thousands(holding) .. ' task leases, the '
    .. 'most one agent may hold', 'Finish some first: complete_task or fail_task each task you hold '
    .. '(heartbeat lists them), then claim again.' }
end
local now = now_ms()
promote_due(now, 100)

local id
if wanted ~= '' then
  local state, assignee = unpack(redis.call('HMGET', K_TASK .. wanted, 'state', 'assignee'))
  if not state then return { 'not_found', 'task ' .. wanted .. ' does not exist' } end
  if assignee and assignee ~= agent then
    return { 'wrong_state', 'task ' .. wanted .. ' is assigned to ' .. assignee .. '; only that agent may claim it',
      'Claim without task_id to get the work meant for you or your capabilities.' }
  end
  if state ~= 'ready' then return { 'wrong_state', 'task ' .. wanted .. ' is ' .. state .. ', not ready' } end
  id = wanted
else
  local caps = split(caps_csv)
  if #caps == 0 then
    caps = split(redis.call('HGET', K_AGENT .. agent, 'caps'))
    caps[#caps + 1] = 'any'
  end
  local best_score
  for _, c in ipairs(caps) do
    local top = redis.call('ZRANGE', K_READY .. c, 0, 0, 'WITHSCORES')
    if top[1] and (not best_score or tonumber(top[2]) < best_score) then
      id, best_score = top[1], tonumber(top[2])
    end
  end
  local mine = redis.call('ZRANGE', K_ASSIGNED .. agent, 0, 0, 'WITHSCORES')
  if mine[1] and (not best_score
    or math.floor(tonumber(mine[2]) / PRIORITY_SPAN) <= math.floor(best_score / PRIORITY_SPAN)) then
    id = mine[1]
  end
  if not id then
    local next_due = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
    local elsewhere = {}
    local counters = redis.call('HGETALL', K_COUNTERS)
    for i = 1, #counters, 2 do
      if string.sub(counters[i], 1, 6) == 'ready:' and tonumber(counters[i + 1]) > 0 then
        elsewhere[#elsewhere + 1] = string.sub(counters[i], 7)
        elsewhere[#elsewhere + 1] = counters[i + 1]
      end
    end
    return { 'empty', caps, redis.call('ZCARD', K_DELAYED), next_due[2] or '', elsewhere, now }
  end
end

local cap, assignee, wf = unpack(redis.call('HMGET', K_TASK .. id, 'cap', 'assignee', 'wf'))
unqueue(id, cap, assignee)
local attempt = redis.call('HINCRBY', K_TASK .. id, 'attempts', 1)
local fence = redis.call('HINCRBY', K_TASK .. id, 'fence', 1)
local expires = now + lease_ms
redis.call('HSET', K_TASK .. id, 'token', token, 'owner', agent, 'lease_ms', lease_ms, 'lease_exp', expires)
redis.call('HDEL', K_TASK .. id, 'progress_pct', 'progress_msg', 'progress_at') -- an earlier attempt's
redis.call('ZADD', K_LEASES, expires, id)
redis.call('SADD', K_HELD .. agent, id)
begin_attempt(id, attempt, fence, agent, now)
set_state(id, wf, 'ready', 'claimed', now)
emit('task.claimed', agent, { task = id, workflow = wf, attempt = attempt, fence = fence })
return leased(id, attempt, fence, token, expires)
