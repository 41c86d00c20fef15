-- clock: the Redis time, for views that compare stored expiries with it. Changes nothing.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it); on a Cluster it routes
-- the call to the namespace's shard
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller
-- returns: {'ok', now_ms}
--@include keys.lua
--@include common.lua

return { 'ok', now_ms() }
