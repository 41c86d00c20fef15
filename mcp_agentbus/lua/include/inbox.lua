-- Inbox helpers (needs keys.lua and common.lua). An agent's inbox is a stream of every message it
-- got; `unread:<agent>` holds the entry ids not yet read, scored by message sequence (send order).

-- Drop the oldest *read* messages until the inbox holds at most `max`; unread ones are never trimmed.
local function trim_read(agent, max)
  local inbox, unread = K_INBOX .. agent, K_UNREAD .. agent
  local excess = redis.call('XLEN', inbox) - max
  -- Read only as many as may go (usually one); past unread ones, look further in larger steps.
  local start, count = '-', math.min(excess, 100)
  while excess > 0 do
    local batch = redis.call('XRANGE', inbox, start, '+', 'COUNT', count)
    if #batch == 0 then return end
    for _, entry in ipairs(batch) do
      start = '(' .. entry[1]
      if not redis.call('ZSCORE', unread, entry[1]) then
        redis.call('XDEL', inbox, entry[1])
        excess = excess - 1
        if excess == 0 then return end
      end
    end
    count = 100
  end
end

-- A stream entry's fields as a table.
local function fields_of(entry)
  local f = {}
  for i = 1, #entry[2], 2 do f[entry[2][i]] = entry[2][i + 1] end
  return f
end
