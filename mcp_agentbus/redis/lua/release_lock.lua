-- release_lock: give a lock up; only its token can. A token revoke_lock took the lock from is told so.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, agent, resource, lock_token
-- returns: {'ok', released ('1'|'0'), reason} | {'not_lock_owner', message}
--@include keys.lua
--@include common.lua
--@include locks.lua

local agent, res, token = ARGV[4], ARGV[5], ARGV[6]
local owner, lock_token = unpack(redis.call('HMGET', K_LOCK .. res, 'owner', 'token'))
local revoked_by = lock_token ~= token and revoked_from(token)
if revoked_by then
  return { 'ok', '0', 'this lock on ' .. res .. ' was revoked by ' .. revoked_by .. ' and is no longer yours' ..
    (owner and ('; ' .. owner .. ' holds it now') or '') }
end
if not owner then
  return { 'ok', '0', 'no lock is held on ' .. res .. ' (it was released, or it expired)' }
end
if lock_token ~= token then
  return { 'not_lock_owner', res .. ' is held by ' .. owner .. ' under another lock_token' }
end
drop_lock(res, owner, 'lock.released')
return { 'ok', '1', '' }
