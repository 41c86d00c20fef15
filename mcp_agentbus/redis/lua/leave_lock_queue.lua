-- leave_lock_queue: a waiter gives up its place (it timed out or went away), so the next can go.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, agent, resource
-- returns: {'ok'}
--@include keys.lua
--@include common.lua

local agent, res = ARGV[4], ARGV[5]
if redis.call('ZREM', K_LOCK_QUEUE .. res, agent) == 1 then
  wake_lock(res)
  wake('locks')
end
redis.call('HDEL', K_LOCK_WAITS .. res, agent)
return { 'ok' }
