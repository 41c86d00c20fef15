-- fail_task: end a leased attempt with an error; retry with exponential backoff and jitter until
-- max_attempts, then the task is dead and its dependents are cancelled.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, agent, task_id, lease_token, error, retry ('1'|'0'),
--       jitter (0..1, from the caller), backoff_base_ms, backoff_cap_ms
-- returns: {'ok', already ('1'|'0'), state, due_ms | '', {cancelled id, ...}, attempts, max_attempts,
--           more ('1' when cancelling further dependents was left to the reaper)}
--        | {'not_found' | 'wrong_state' | 'lease_lost', message[, hint]}
--@include keys.lua
--@include stats.lua
--@include common.lua
--@include attempts.lua
--@include tasks.lua

local agent, id, token, err, retry = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8] == '1'
local jitter, base_ms, cap_ms = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local state, lease_token, owner, wf, attempts, max_attempts, failed_token, failed_outcome, fence =
  unpack(redis.call('HMGET', K_TASK .. id, 'state', 'token', 'owner', 'wf', 'attempts', 'max_attempts',
    'failed_token', 'failed_outcome', 'fence'))
if not state then return { 'not_found', 'task ' .. id .. ' does not exist' } end
attempts, max_attempts = tonumber(attempts), tonumber(max_attempts)
if failed_token == token and lease_token ~= token then -- a repeat: report what the first call did
  local outcome = cjson.decode(failed_outcome)
  return { 'ok', '1', outcome[1], outcome[2], {}, outcome[3], max_attempts, '0' }
end
if state ~= 'claimed' and fence == '0' then
  return { 'wrong_state', 'task ' .. id .. ' has never been claimed (it is ' .. state .. '); claim it first' }
end
if state ~= 'claimed' or lease_token ~= token then
  return lease_lost(id, state)
end

local now = now_ms()
drop_lease(id, owner, 'failed', now, err)
redis.call('HSET', K_TASK .. id, 'error', err, 'failed_token', token)
count_throughput('failed', now)
if retry and attempts < max_attempts then
  local delay = math.floor(math.min(cap_ms, base_ms * 2 ^ (attempts - 1)) * (0.5 + 0.5 * jitter))
  release(id, wf, 'claimed', now + delay, now)
  state = redis.call('HGET', K_TASK .. id, 'state')
  emit('task.failed', agent, { task = id, workflow = wf, error = err, attempt = attempts,
    retry_at = now + delay })
  redis.call('HSET', K_TASK .. id, 'failed_outcome', cjson.encode({ state, now + delay, attempts }))
  return { 'ok', '0', state, now + delay, {}, attempts, max_attempts, '0' }
end
emit('task.failed', agent, { task = id, workflow = wf, error = err, attempt = attempts })
redis.call('HSET', K_TASK .. id, 'failed_outcome', cjson.encode({ 'dead', '', attempts }))
count_throughput('dead', now)
local cancelled, more = kill(id, wf, 'claimed', err, now, agent)
return { 'ok', '0', 'dead', '', cancelled, attempts, max_attempts, more and '1' or '0' }
