-- Notices: what an agent should know now — unread messages, its leases and locks about to expire,
-- and those taken back from it since it was last told (each told once, so not on a refused call,
-- whose result shows no notices). scripts.py ends every script with `return with_notices(main())`,
-- so a call made for an agent (CALLER) carries its notices in the same reply, as one
-- last element:
-- {unread, {newest_from, newest_subject_or_body} | {}, {kind, name, ms_left, ...}, {'task <id>' | 'lock <res>', ...}}
-- (needs keys.lua, common.lua and inbox.lua)

local function notices(agent, with_lost)
  local now = now_ms()
  -- Warn when less than half the lease or lock, and under 30 s, is left.
  local function soon(left, length) return left < math.min(30000, length / 2) end

  local unread = redis.call('ZCARD', K_UNREAD .. agent)
  local newest = {}
  if unread > 0 then
    local entry_id = redis.call('ZREVRANGE', K_UNREAD .. agent, 0, 0)[1]
    local entry = redis.call('XRANGE', K_INBOX .. agent, entry_id, entry_id)[1]
    if entry then
      local f = fields_of(entry)
      newest = { f.from, f.subject ~= '' and f.subject or f.body }
    end
  end

  local expiring = {}
  for _, id in ipairs(redis.call('SMEMBERS', K_HELD .. agent)) do
    local state, owner, lease_exp, lease_ms = unpack(redis.call('HMGET', K_TASK .. id, 'state', 'owner',
      'lease_exp', 'lease_ms'))
    if state == 'claimed' and owner == agent and soon(tonumber(lease_exp) - now, tonumber(lease_ms)) then
      expiring[#expiring + 1] = 'task'
      expiring[#expiring + 1] = id
      expiring[#expiring + 1] = math.max(0, tonumber(lease_exp) - now)
    end
  end
  for _, res in ipairs(redis.call('SMEMBERS', K_AGENT_LOCKS .. agent)) do
    local owner, expires, ttl_ms = unpack(redis.call('HMGET', K_LOCK .. res, 'owner', 'expires', 'ttl_ms'))
    if owner == agent and soon(tonumber(expires) - now, tonumber(ttl_ms)) then
      expiring[#expiring + 1] = 'lock'
      expiring[#expiring + 1] = res
      expiring[#expiring + 1] = math.max(0, tonumber(expires) - now)
    end
  end

  local lost = {}
  if with_lost then
    lost = redis.call('LRANGE', K_LOST .. agent, 0, -1)
    if #lost > 0 then redis.call('DEL', K_LOST .. agent) end
  end
  return { unread, newest, expiring, lost }
end

-- The statuses with which a script refuses a call (store.py turns them into errors).
local REFUSED = { not_found = true, wrong_state = true, lease_lost = true, invalid_argument = true,
  not_lock_owner = true, inbox_full = true, payload_too_large = true }

local function with_notices(reply)
  if CALLER ~= '' then reply[#reply + 1] = notices(CALLER, not REFUSED[reply[1]]) end
  return reply
end
