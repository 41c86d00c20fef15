-- revoke_lock: take a lock from its holder whatever its token (a person releasing a stuck lock). The
-- queue goes on as after a release; the holder is told (its next call's notices, and its waits end),
-- and its lock_token is remembered (include/locks.lua), so its late release_lock says it was revoked.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, by (who revokes), resource
-- returns: {'ok', holder, fencing_token, waiters} | {'not_found', message, hint}
--@include keys.lua
--@include common.lua
--@include locks.lua

local by, res = ARGV[4], ARGV[5]
local lock = live_lock(res, now_ms())
if not lock then
  return { 'not_found', 'no lock is held on ' .. res .. ' (it was released, or it expired)',
    'Nothing to release; the locks table shows what is held now.' }
end
unlock(res, lock.owner)
remember_revoked(lock.token, by, LOCKS_MAX)
tell_lost(lock.owner, 'revoked ' .. by .. ' ' .. res) -- the resource last: it may hold spaces
emit('lock.revoked', by, { resource = res, holder = lock.owner, fence = tonumber(lock.fence) })
return { 'ok', lock.owner, lock.fence, redis.call('ZCARD', K_LOCK_QUEUE .. res) }
