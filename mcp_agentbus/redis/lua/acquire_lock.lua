-- acquire_lock: an exclusive, expiring lock on a resource, refused while anything overlapping is
-- held. Agents queued for the resource go first, so a waiter is not starved by newcomers.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, agent, resource, ttl_ms, lock_token (used if granted),
--       queue ('1': keep a place in the queue when refused), queue_ms (how long to keep it), max_held
--       (locks one agent may hold)
-- returns: {'ok', lock_token, fencing_token, expires_at_ms, extended ('1'|'0')}
--        | {'held', conflicting_resource, holder, expires_at_ms, waiters, now_ms}
--        | {'queued', first_waiter, waiters, now_ms}
--        | {'invalid_argument', message, hint} (LOCKS_MAX locks are held, or the owner's share)
--        | {'wrong_state', message, hint} (the agent holds max_held locks, or too many expired locks
--          below a directory wait to be taken back)
--@include keys.lua
--@include common.lua
--@include locks.lua

local agent, res, ttl_ms, token = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local queue_me, queue_ms, max_held = ARGV[8] == '1', tonumber(ARGV[9]), tonumber(ARGV[10])
local now = now_ms()
local queue, waits = K_LOCK_QUEUE .. res, K_LOCK_WAITS .. res

for _, waiter in ipairs(redis.call('ZRANGE', queue, 0, -1)) do
  if tonumber(redis.call('HGET', waits, waiter) or 0) <= now then
    redis.call('ZREM', queue, waiter)
    redis.call('HDEL', waits, waiter)
    wake('locks')
  end
end

local conflict, held, crowded = overlapping(res, now)
if crowded then
  return { 'wrong_state', 'more than ' .. BELOW_MAX .. ' expired locks below ' .. res .. ' are being taken ' ..
    'back; ' .. res .. ' was not locked', 'Call acquire_lock again in a second or two.' }
end
if conflict == res and held.owner == agent then -- the holder again: extend, same token and fence
  local expires = now + ttl_ms
  redis.call('HSET', K_LOCK .. res, 'expires', expires, 'ttl_ms', ttl_ms)
  redis.call('ZADD', K_LOCKS, expires, res)
  local charged = redis.call('HGET', K_LOCK .. res, 'owned_by')
  if charged then redis.call('ZADD', K_OWNED_LOCKS .. charged, expires, res) end
  wake('locks')
  return { 'ok', held.token, held.fence, expires, '1' }
end

local first = redis.call('ZRANGE', queue, 0, 0)[1]
if conflict or (first and first ~= agent) then
  if queue_me then
    if not redis.call('ZSCORE', queue, agent) then
      redis.call('ZADD', queue, redis.call('HINCRBY', K_COUNTERS, 'seq', 1), agent)
      wake('locks')
    end
    redis.call('HSET', waits, agent, now + queue_ms)
  end
  local waiters = redis.call('ZCARD', queue)
  if conflict then return { 'held', conflict, held.owner, held.expires, waiters, now } end
  return { 'queued', first, waiters, now }
end

if redis.call('ZCARD', K_LOCKS) >= LOCKS_MAX then
  return { 'invalid_argument', LOCKS_MAX .. ' locks are held in this namespace, the most it keeps; ' .. res ..
    ' was not locked', 'Release locks you no longer need (release_lock), or lock a directory (a path ' ..
    "ending in '/') instead of each file in it." }
end
if redis.call('SCARD', K_AGENT_LOCKS .. agent) >= max_held then
  return { 'wrong_state', agent .. ' already holds ' .. max_held .. ' locks, the most one agent may; ' .. res ..
    ' was not locked', 'Release locks you no longer need (release_lock), or lock a directory (a path ' ..
    "ending in '/') instead of each file in it." }
end
local owner = owner_for(agent)
local has = owned_count(K_OWNED_LOCKS .. owner, now)
if has >= LOCKS_MAX_PER_OWNER then
  return over_share(owner, has, LOCKS_MAX_PER_OWNER, 'locks held at once', res .. ' was not locked',
    'Release locks you no longer need (release_lock), or lock a directory (a path ending in \'/\') ' ..
    'instead of each file in it.', 'LOCKS_MAX_PER_OWNER')
end
redis.call('ZREM', queue, agent)
redis.call('HDEL', waits, agent)
local fence = next_fence(res)
local expires = now + ttl_ms
redis.call('HSET', K_LOCK .. res, 'owner', agent, 'token', token, 'fence', fence, 'expires', expires,
  'ttl_ms', ttl_ms, 'acquired', now, 'owned_by', owner)
redis.call('ZADD', K_LOCKS, expires, res)
redis.call('ZADD', K_OWNED_LOCKS .. owner, expires, res)
redis.call('ZADD', K_LOCK_NAMES, 0, res)
redis.call('SADD', K_AGENT_LOCKS .. agent, res)
emit('lock.acquired', agent, { resource = res, fence = fence })
return { 'ok', token, fence, expires, '0' }
