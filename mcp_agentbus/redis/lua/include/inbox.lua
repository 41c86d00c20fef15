-- Inbox helpers (needs keys.lua and common.lua). An agent's inbox is a stream of every message it
-- got; `unread:<agent>` holds the entry ids not yet read and `read:<agent>` those read, both scored by
-- message sequence (send order), so a message id finds its entry (`received`); `inbox_bytes` what the
-- inbox's messages are charged. The inbox of an agent that is not live is
-- *idle*: it expires RETENTION_MS after its last message, and `inboxes:idle` (score = that expiry)
-- bounds how many wait.

-- What a stored message is charged against INBOX_MAX_BYTES: its variable fields, plus what its id,
-- thread, field names and index entry cost (so a flood of tiny messages is bounded by bytes too).
local MESSAGE_OVERHEAD = 256

local function message_bytes(f)
  return MESSAGE_OVERHEAD + #f.from + #f.to + #f.subject + #f.body + #f.data + #f.reply_to
end

-- A stream entry's fields as a table.
local function fields_of(entry)
  local f = {}
  for i = 1, #entry[2], 2 do f[entry[2][i]] = entry[2][i + 1] end
  return f
end

-- The bytes `agent`'s inbox is charged (a record outliving its expired inbox is dropped).
local function inbox_bytes(agent)
  if redis.call('EXISTS', K_INBOX .. agent) == 0 then
    redis.call('HDEL', K_INBOX_BYTES, agent)
    return 0
  end
  return tonumber(redis.call('HGET', K_INBOX_BYTES, agent) or 0)
end

-- Which of the oldest *read* messages would go for the inbox to hold at most `max` and be charged at
-- most `max_bytes` (unread ones are never trimmed): their entry ids, and what the inbox would be charged
-- without them. Nothing is deleted (`drop_read` does that), so a send that is refused anyway keeps them.
local function read_to_trim(agent, max, max_bytes)
  local inbox, unread = K_INBOX .. agent, K_UNREAD .. agent
  local bytes = inbox_bytes(agent)
  local excess, over = redis.call('XLEN', inbox) - max, bytes - max_bytes
  local victims = {}
  -- Read only as many as may go (usually one); past unread ones, look further in larger steps.
  local start, count = '-', math.max(1, math.min(excess, 100))
  while excess > 0 or over > 0 do
    local batch = redis.call('XRANGE', inbox, start, '+', 'COUNT', count)
    if #batch == 0 then break end
    for _, entry in ipairs(batch) do
      start = '(' .. entry[1]
      if not redis.call('ZSCORE', unread, entry[1]) then
        victims[#victims + 1] = entry[1]
        local size = message_bytes(fields_of(entry))
        bytes, excess, over = bytes - size, excess - 1, over - size
        if excess <= 0 and over <= 0 then break end
      end
    end
    count = 100
  end
  return victims, bytes
end

-- Delete the read messages `read_to_trim` chose; the inbox is then charged `bytes`.
local function drop_read(agent, victims, bytes)
  for _, entry_id in ipairs(victims) do
    redis.call('XDEL', K_INBOX .. agent, entry_id)
    redis.call('ZREM', K_READ .. agent, entry_id)
  end
  if bytes > 0 then redis.call('HSET', K_INBOX_BYTES, agent, bytes) else redis.call('HDEL', K_INBOX_BYTES, agent) end
end

-- A message the agent's inbox keeps, read or not, by its id (m-<sequence>): its fields, or nil.
local function received(agent, message_id)
  local seq = string.match(message_id, '^m%-(%d+)$')
  if not seq then return nil end
  for _, index in ipairs({ K_UNREAD .. agent, K_READ .. agent }) do
    local entry_id = redis.call('ZRANGEBYSCORE', index, seq, seq, 'LIMIT', 0, 1)[1]
    if entry_id then
      local entry = redis.call('XRANGE', K_INBOX .. agent, entry_id, entry_id)[1]
      local f = entry and fields_of(entry)
      if f and f.id == message_id then return f end -- not 'm-007' for m-7: only ids the bus gave out
    end
  end
  return nil
end

-- An index of the inbox (`unread:`, `read:`) just written expires with it: an idle inbox has an expiry,
-- a live one none (an index made while the inbox was idle would otherwise outlive it).
local function expire_with_inbox(agent, index)
  local ttl = redis.call('PTTL', K_INBOX .. agent)
  if ttl > 0 then redis.call('PEXPIRE', index, ttl) end
end

-- The agent is not live: its inbox (if any) waits RETENTION_MS after its last message, then expires.
local function park_inbox(agent, now)
  if redis.call('EXISTS', K_INBOX .. agent) == 0 then return end
  redis.call('PEXPIRE', K_INBOX .. agent, RETENTION_MS)
  redis.call('PEXPIRE', K_UNREAD .. agent, RETENTION_MS)
  redis.call('PEXPIRE', K_READ .. agent, RETENTION_MS)
  redis.call('ZADD', K_INBOXES_IDLE, now + RETENTION_MS, agent)
end

-- An idle inbox a message opened is charged to the owner of that message (`inbox_owners`), against
-- IDLE_INBOXES_MAX_PER_OWNER, while it waits: scored by its expiry, which each message to it moves.
-- `owner` nil: a further message, which moves the expiry of whatever charge there is.
local function charge_inbox(agent, owner, now)
  if redis.call('EXISTS', K_INBOX .. agent) == 0 then return end
  owner = owner or redis.call('HGET', K_INBOX_OWNERS, agent)
  if not owner then return end
  redis.call('HSET', K_INBOX_OWNERS, agent, owner)
  redis.call('ZADD', K_OWNED_INBOXES .. owner, now + RETENTION_MS, agent)
  redis.call('PEXPIRE', K_OWNED_INBOXES .. owner, RETENTION_MS)
end

-- The inbox is no longer idle (its agent is live) or is gone: it no longer uses its owner's share.
local function uncharge_inbox(agent)
  local owner = redis.call('HGET', K_INBOX_OWNERS, agent)
  if owner then
    redis.call('ZREM', K_OWNED_INBOXES .. owner, agent)
    redis.call('HDEL', K_INBOX_OWNERS, agent)
  end
end

-- The agent is live: its inbox stays until read (bounded by inbox_max and INBOX_MAX_BYTES). An inbox
-- has an expiry exactly while it is in the idle index, so one ZREM tells whether there is work.
local function unpark_inbox(agent)
  if redis.call('ZREM', K_INBOXES_IDLE, agent) == 1 then
    redis.call('PERSIST', K_INBOX .. agent)
    redis.call('PERSIST', K_UNREAD .. agent)
    redis.call('PERSIST', K_READ .. agent)
    uncharge_inbox(agent)
  end
end

local function drop_inbox(agent)
  redis.call('DEL', K_INBOX .. agent, K_UNREAD .. agent, K_READ .. agent)
  redis.call('HDEL', K_INBOX_BYTES, agent)
  redis.call('ZREM', K_INBOXES_IDLE, agent)
  uncharge_inbox(agent)
end

-- Forget up to `limit` idle inboxes whose time is up (Redis has expired their keys already).
local function forget_expired_inboxes(now, limit)
  local due = redis.call('ZRANGEBYSCORE', K_INBOXES_IDLE, '-inf', now, 'LIMIT', 0, limit)
  for _, agent in ipairs(due) do drop_inbox(agent) end
  return #due
end
