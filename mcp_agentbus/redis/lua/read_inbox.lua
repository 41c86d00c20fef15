-- read_inbox: the agent's unread messages, oldest first, optionally of one thread, as many as fit in
-- one reply (`budget` bytes of JSON; the first always comes); unless peeking, exactly those returned are
-- marked read in the same step (so a message is read once, whichever process serves it, and never
-- marked read without being in the reply): moved from `unread:` to `read:`.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, agent, limit, peek ('1'|'0'), thread_id ('' = any), budget
-- returns: {'ok', {{entry_id, id, from, to, subject, body, data, thread, reply_to}, ...}, unread_remaining,
--           full (1 when the budget stopped it before `limit`)}
--@include keys.lua
--@include common.lua
--@include inbox.lua

local agent, limit, peek, thread = ARGV[4], tonumber(ARGV[5]), ARGV[6] == '1', ARGV[7]
local budget = tonumber(ARGV[8])
local inbox, unread = K_INBOX .. agent, K_UNREAD .. agent
-- Room for a message's ids, names, time and field names in the reply, besides subject, body and data.
local MESSAGE_ROOM = 400

local found, ids, start, size, full = {}, {}, 0, 0, false
while #found < limit and not full do
  local page = redis.call('ZRANGE', unread, start, start + 99)
  for _, entry_id in ipairs(page) do
    local entry = redis.call('XRANGE', inbox, entry_id, entry_id)[1]
    if entry then
      local f = fields_of(entry)
      if thread == '' or f.thread == thread then
        -- As JSON-escaped in the reply (cjson escapes at least as much as the server does).
        local bytes = #cjson.encode(f.body) + #cjson.encode(f.subject) + #f.data + MESSAGE_ROOM
        if #found > 0 and size + bytes > budget then
          full = true
          break
        end
        size = size + bytes
        found[#found + 1] = { entry_id, f.id, f.from, f.to, f.subject, f.body, f.data, f.thread, f.reply_to }
        ids[#ids + 1] = f.id
        if #found == limit then break end
      end
    end
  end
  if #page < 100 then break end
  start = start + 100
end

if not peek and #found > 0 then
  local read = K_READ .. agent
  for _, m in ipairs(found) do
    redis.call('ZREM', unread, m[1])
    redis.call('ZADD', read, string.sub(m[2], 3), m[1]) -- kept so a reply_to can find it (`received`)
  end
  expire_with_inbox(agent, read)
  emit('message.read', agent, { agent = agent, messages = ids })
  wake('inbox:' .. agent)
end
return { 'ok', found, redis.call('ZCARD', unread), full and 1 or 0 }
