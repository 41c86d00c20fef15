-- set_state: write, add to (increment) or delete one key of the namespace's shared state, optionally
-- only at a given version (compare-and-set) and with an expiry; appends state.set / state.deleted.
-- Versions only grow per key: a deleted or expired key leaves a tombstone (state_tombs, score = its last
-- version) that the key continues from when it is set again. At most keys_max tombstones are kept: past
-- it the lowest version goes, and counters.state_floor keeps the highest version so dropped, above which
-- every key without a tombstone starts. Expired keys are deleted (state.deleted, expired: true) by this
-- script, up to SWEEP a call, so live and expired keys together stay within keys_max.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, agent, idempotency scope ('' = none),
--       key, op ('value' | 'increment' | 'delete'), operand (JSON text | a number | ''), if_version ('' = any),
--       ttl_ms ('' = keep the key's expiry), keys_max, keys_max_per_owner
-- returns: {'ok' | 'duplicate', outcome, version, value (JSON text, '' = none), expires_at_ms (0 = never),
--           key (a duplicate's: the key its first call wrote)}
--          outcome 'written' | 'deleted': the key's version and value after the call;
--          'conflict': if_version did not match: the key's version (0 = not set) and value;
--          'absent': a delete of a key that is not set (version 0)
--        | {'invalid_argument' | 'wrong_state', message, hint}
--@include keys.lua
--@include common.lua

local agent, idem, key, op, operand = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local if_version, ttl_ms = tonumber(ARGV[9]), tonumber(ARGV[10])
local keys_max, keys_share = tonumber(ARGV[11]), tonumber(ARGV[12])
local SWEEP = 20

if idem ~= '' then
  local first = redis.call('GET', K_IDEM .. idem)
  if first then
    local r = cjson.decode(first)
    return { 'duplicate', r[1], r[2], r[3], r[4], r[5] or key }
  end
end

local now = now_ms()

local function bury(k, version)
  redis.call('ZADD', K_STATE_TOMBS, version, k)
  if redis.call('ZCARD', K_STATE_TOMBS) > keys_max then
    local dropped = redis.call('ZPOPMIN', K_STATE_TOMBS)
    if tonumber(dropped[2]) > tonumber(redis.call('HGET', K_COUNTERS, 'state_floor') or 0) then
      redis.call('HSET', K_COUNTERS, 'state_floor', dropped[2])
    end
  end
end

-- Delete k, whose record is at `version` and charged to `charged`; its deletion is version + 1.
local function drop(k, version, charged, by, expired)
  local deleted = version + 1
  redis.call('DEL', K_STATE .. k)
  redis.call('ZREM', K_STATE_KEYS, k)
  redis.call('ZREM', K_STATE_EXPIRY, k)
  if charged and charged ~= '' then redis.call('ZREM', K_OWNED_STATE .. charged, k) end
  bury(k, deleted)
  emit('state.deleted', by, { key = k, version = deleted, expired = expired or nil })
  wake('state:' .. k)
  return deleted
end

for _, k in ipairs(redis.call('ZRANGEBYSCORE', K_STATE_EXPIRY, '-inf', now, 'LIMIT', 0, SWEEP)) do
  local r = redis.call('HMGET', K_STATE .. k, 'version', 'owned_by')
  if r[1] then drop(k, tonumber(r[1]), r[2], '', true) else redis.call('ZREM', K_STATE_EXPIRY, k) end
end

local rec = redis.call('HMGET', K_STATE .. key, 'version', 'value', 'expires', 'owned_by')
local version, value, expires, charged = tonumber(rec[1]), rec[2], tonumber(rec[3] or 0), rec[4]
if version and expires > 0 and expires <= now then
  drop(key, version, charged, '', true)
  version, value, expires, charged = nil, nil, 0, nil
end

local function finish(outcome, v, val, exp)
  local reply = { outcome, v, val or '', exp or 0, key }
  if idem ~= '' then redis.call('SET', K_IDEM .. idem, cjson.encode(reply), 'PX', RETENTION_MS) end
  return { 'ok', outcome, v, val or '', exp or 0, key }
end

if if_version and if_version ~= (version or 0) then return finish('conflict', version or 0, value, expires) end

if op == 'delete' then
  if not version then return finish('absent', 0, '', 0) end
  return finish('deleted', drop(key, version, charged, agent, false), '', 0)
end

-- JSON for a number: integers exactly (up to 2^53), others in the fewest digits that read back the same.
local function number_json(n)
  if n == math.floor(n) and math.abs(n) < 2 ^ 53 then return string.format('%d', n) end
  for digits = 15, 16 do
    local text = string.format('%.' .. digits .. 'g', n)
    if tonumber(text) == n then return text end
  end
  return string.format('%.17g', n)
end

local new_value = operand
if op == 'increment' then
  local before = 0
  if version then
    local decoded_ok, decoded = pcall(cjson.decode, value)
    if not decoded_ok or type(decoded) ~= 'number' then
      local shown = #value > 40 and (string.sub(value, 1, 40) .. '...') or value
      return { 'wrong_state', key .. ' holds ' .. shown .. ', not a number; nothing was added',
        'Increment only keys that hold a number: set it with value first, or count in another key.' }
    end
    before = decoded
  end
  local step = tonumber(operand)
  local sum = before + step
  if sum ~= sum or sum == math.huge or sum == -math.huge then
    return { 'invalid_argument', 'adding ' .. operand .. ' to ' .. key .. ' would leave no finite number',
      'Add a smaller number, or set a new value with value.' }
  end
  -- A count must stay exact: past 2^53 a double cannot hold every whole number (the sum would be off).
  if before == math.floor(before) and step == math.floor(step) and math.abs(sum) >= 2 ^ 53 then
    return { 'invalid_argument', 'adding ' .. operand .. ' to ' .. key .. ' would reach ±2^53 (9007199254740992), ' ..
      'past which whole numbers are not exact; nothing was added',
      'Count in larger units, or keep a number this large with value (as a string).' }
  end
  new_value = number_json(sum)
end

if not version then
  local live = redis.call('ZCARD', K_STATE_KEYS) - redis.call('ZCOUNT', K_STATE_EXPIRY, '-inf', now)
  if live >= keys_max then
    return { 'invalid_argument', 'this namespace holds ' .. keys_max .. ' shared-state keys, the most it ' ..
      'keeps; ' .. key .. ' was not set', 'Delete keys you no longer need (set_state with delete: true), ' ..
      'give short-lived ones a ttl_seconds, or keep related values together in one key.' }
  end
  charged = owner_for(agent)
  local has = owned_count(K_OWNED_STATE .. charged, now)
  if has >= keys_share then
    return over_share(charged, has, keys_share, 'shared-state keys', key .. ' was not set',
      'Delete keys you no longer need (set_state with delete: true), or give short-lived ones a ttl_seconds.',
      'STATE_KEYS_MAX_PER_OWNER')
  end
  local tomb = redis.call('ZSCORE', K_STATE_TOMBS, key) or redis.call('HGET', K_COUNTERS, 'state_floor')
  version = tonumber(tomb or 0)
  redis.call('ZREM', K_STATE_TOMBS, key)
  redis.call('ZADD', K_STATE_KEYS, 0, key)
end

if ttl_ms then expires = now + ttl_ms end
version = version + 1
redis.call('HSET', K_STATE .. key, 'value', new_value, 'version', version, 'by', agent, 'at', now,
  'expires', expires, 'owned_by', charged)
if expires > 0 then
  redis.call('ZADD', K_STATE_EXPIRY, expires, key)
  redis.call('ZADD', K_OWNED_STATE .. charged, expires, key)
else
  redis.call('ZADD', K_OWNED_STATE .. charged, '+inf', key)
end
emit('state.set', agent, { key = key, version = version })
wake('state:' .. key)
return finish('written', version, new_value, expires)
