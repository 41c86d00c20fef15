-- unread_messages: mark messages unread again, for a read whose caller was cut off before it got them.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, agent, entry_id, sequence, entry_id, sequence, ...
-- returns: {'ok', restored}
--@include keys.lua
--@include common.lua
--@include inbox.lua

local agent = ARGV[4]
local ids = {}
for i = 5, #ARGV, 2 do
  if redis.call('XRANGE', K_INBOX .. agent, ARGV[i], ARGV[i])[1] then
    redis.call('ZADD', K_UNREAD .. agent, tonumber(ARGV[i + 1]), ARGV[i])
    redis.call('ZREM', K_READ .. agent, ARGV[i])
    ids[#ids + 1] = 'm-' .. ARGV[i + 1]
  end
end
if #ids > 0 then
  expire_with_inbox(agent, K_UNREAD .. agent)
  emit('message.unread', agent, { agent = agent, messages = ids })
  wake('inbox:' .. agent)
end
return { 'ok', #ids }
