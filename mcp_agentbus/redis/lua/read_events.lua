-- read_events: up to `count` entries of the event log after a cursor, with the caller's notices, in one
-- round trip; with `check`, also whether the retention trimmed events after the cursor: it did when
-- the log keeps no entry at or before it. Changes nothing (but the caller's presence, as every call does).
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, cursor ('0' = from the start; never
--       the largest id, after which Redis refuses a range), count, check ('1'|'0')
-- returns: {'ok', trimmed_to (the oldest id kept, when events after the cursor were trimmed; else ''),
--           {{id, {field, value, ...}}, ...}}
--@include keys.lua
--@include common.lua

local cursor, count, check = ARGV[4], tonumber(ARGV[5]), ARGV[6] == '1'
local trimmed_to = ''
if check and cursor ~= '0' and not redis.call('XREVRANGE', K_EVENTS, cursor, '-', 'COUNT', 1)[1] then
  local oldest = redis.call('XRANGE', K_EVENTS, '-', '+', 'COUNT', 1)[1]
  if oldest then trimmed_to = oldest[1] end
end
local start = cursor == '0' and '-' or '(' .. cursor
return { 'ok', trimmed_to, redis.call('XRANGE', K_EVENTS, start, '+', 'COUNT', count) }
