-- release_task: hand a just-claimed task back untouched (its claimer went away before seeing it).
-- The attempt is not counted; the fence still grows, so the released lease can never be used.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, agent, task_id, lease_token
-- returns: {'ok', released ('1'|'0')}
--@include keys.lua
--@include common.lua
--@include attempts.lua
--@include tasks.lua

local agent, id, token = ARGV[4], ARGV[5], ARGV[6]
local state, lease_token, owner, wf = unpack(redis.call('HMGET', K_TASK .. id, 'state', 'token', 'owner',
  'wf'))
if state ~= 'claimed' or lease_token ~= token then return { 'ok', '0' } end
local now = now_ms()
drop_lease(id, owner, 'released', now)
redis.call('HINCRBY', K_TASK .. id, 'attempts', -1)
make_ready(id, now)
emit('task.released', agent, { task = id, workflow = wf })
return { 'ok', '1' }
