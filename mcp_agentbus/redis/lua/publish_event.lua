-- publish_event: append a user event to the namespace's event log.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, agent, idempotency scope ('' = none), topic, data (JSON text)
-- returns: {'ok', event_id} | {'duplicate', first_event_id}
--@include keys.lua
--@include common.lua

local agent, idem, topic, data = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if idem ~= '' then
  local first = redis.call('GET', K_IDEM .. idem)
  if first then return { 'duplicate', first } end
end
local id = emit(topic, agent, data)
if idem ~= '' then redis.call('SET', K_IDEM .. idem, id, 'PX', RETENTION_MS) end
return { 'ok', id }
