-- read_state: one key of the shared state as it is now, with the Redis time its expiry is judged by,
-- in one round trip. Changes nothing (but the caller's presence, as every call does).
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, key
-- returns: {'ok', now_ms, value, version, by, at, expires_at_ms, tombstone_version}; nil for what is not there
--@include keys.lua
--@include common.lua

local key = ARGV[4]
local value, version, by, at, expires =
  unpack(redis.call('HMGET', K_STATE .. key, 'value', 'version', 'by', 'at', 'expires'))
return { 'ok', now_ms(), value, version, by, at, expires, redis.call('ZSCORE', K_STATE_TOMBS, key) }
