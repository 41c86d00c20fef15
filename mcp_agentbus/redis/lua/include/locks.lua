-- Lock helpers shared by the lock scripts, heartbeat and the reaper (needs keys.lua and common.lua).

-- Fencing tokens come from one counter per namespace (`counters.lock_fence`), so they grow on every
-- grant of every resource and nothing is kept per resource ever locked. `lock_fences` holds the
-- per-resource tokens of older versions: a resource found there continues above its last token, and
-- its entry goes (so the hash only shrinks).
local function next_fence(res)
  local fence = redis.call('HINCRBY', K_COUNTERS, 'lock_fence', 1)
  local before = tonumber(redis.call('HGET', K_LOCK_FENCES, res) or 0)
  if before >= fence then
    fence = before + 1
    redis.call('HSET', K_COUNTERS, 'lock_fence', fence)
  end
  redis.call('HDEL', K_LOCK_FENCES, res)
  return fence
end

-- Free `res` (held by `owner`) and wake its waiters: the first in its queue takes it on its next try.
local function unlock(res, owner)
  local charged = redis.call('HGET', K_LOCK .. res, 'owned_by')
  if charged then redis.call('ZREM', K_OWNED_LOCKS .. charged, res) end
  redis.call('DEL', K_LOCK .. res)
  redis.call('ZREM', K_LOCKS, res)
  redis.call('ZREM', K_LOCK_NAMES, res)
  redis.call('SREM', K_AGENT_LOCKS .. owner, res)
  wake_lock(res)
end

local function drop_lock(res, owner, topic)
  unlock(res, owner)
  emit(topic, owner, { resource = res })
end

-- The live lock on exactly `res` ({owner =, token =, fence =, expires =}), or nil. An expired one is
-- taken back on the way, so expiry never depends on the reaper having run.
local function live_lock(res, now)
  local owner, token, fence, expires = unpack(redis.call('HMGET', K_LOCK .. res, 'owner', 'token', 'fence',
    'expires'))
  if not owner then -- not held; also heals an index entry left without its lock
    redis.call('ZREM', K_LOCK_NAMES, res)
    redis.call('ZREM', K_LOCKS, res)
    return nil
  end
  if tonumber(expires) <= now then
    drop_lock(res, owner, 'lock.expired')
    tell_lost(owner, 'lock ' .. res)
    return nil
  end
  return { owner = owner, token = token, fence = fence, expires = expires }
end

local BELOW_MAX = 1000 -- names below a directory one acquire looks at, at most
local BELOW_DROPS = 100 -- expired locks below it one acquire takes back, at most

-- A held lock overlapping `res`: the same path (with or without a trailing '/'), a directory above
-- it, or anything below it. 'src/auth/' overlaps 'src/auth/login.py'; 'src/auth.py' does not.
local function overlapping(res, now)
  local path = res
  if string.sub(path, -1) == '/' then path = string.sub(path, 1, -2) end -- '/' itself becomes ''
  local names, i = { path, path .. '/' }, 1
  while true do
    i = string.find(path, '/', i, true)
    if not i then break end
    names[#names + 1] = string.sub(path, 1, i) -- the directory form: 'src/', or '/' for the root
    if i > 1 then names[#names + 1] = string.sub(path, 1, i - 1) end -- and its plain name: 'src'
    i = i + 1
  end
  for _, name in ipairs(names) do
    if name ~= '' then
      local lock = live_lock(name, now)
      if lock then return name, lock end
    end
  end
  -- Below it: a range of the name index, a page at a time. The first expired locks found on the way are
  -- taken back (as the reaper would); past that, a name is only looked up, and past BELOW_MAX names the
  -- look stops: `crowded` says so (only expired locks, which the reaper is clearing, were seen).
  local first, dropped = '[' .. path .. '/', 0
  for _ = 1, BELOW_MAX / 50 do
    local below = redis.call('ZRANGEBYLEX', K_LOCK_NAMES, first, '[' .. path .. '/\255', 'LIMIT', 0, 50)
    for _, name in ipairs(below) do
      if dropped < BELOW_DROPS then
        local lock = live_lock(name, now)
        if lock then return name, lock end
        dropped = dropped + 1
      elseif tonumber(redis.call('ZSCORE', K_LOCKS, name) or 0) > now then
        return name, live_lock(name, now)
      end
      first = '(' .. name
    end
    if #below < 50 then return nil, nil end
  end
  return nil, nil, true
end

-- The lock_tokens revoke_lock took locks from, each with who revoked it: score-0 members
-- '<token> <by>' (a lock_token has no space), found by prefix. At most `max` are kept (past it one goes:
-- the lowest, a random one, since tokens are random), all for the retention after the last revoke.
local function remember_revoked(token, by, max)
  redis.call('ZADD', K_LOCKS_REVOKED, 0, token .. ' ' .. by)
  if redis.call('ZCARD', K_LOCKS_REVOKED) > max then
    redis.call('ZREMRANGEBYRANK', K_LOCKS_REVOKED, 0, 0)
  end
  redis.call('PEXPIRE', K_LOCKS_REVOKED, RETENTION_MS)
end

-- Who revoked the lock `token` held, or nil.
local function revoked_from(token)
  local found = redis.call('ZRANGEBYLEX', K_LOCKS_REVOKED, '[' .. token .. ' ', '[' .. token .. ' \255',
    'LIMIT', 0, 1)[1]
  return found and string.sub(found, #token + 2) or nil
end
