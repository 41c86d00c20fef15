-- send_message: deliver one message into the inbox of each recipient: an agent id, every live agent
-- with a capability ('role:<capability>'), or every live agent ('*'); the sender is left out of the
-- last two. An inbox whose unread messages reached the limit refuses it (never drops an unread one).
-- KEYS: the namespace layout (include/keys.lua)
-- ARGV: events_max, retention_ms, notices_for, sender, idempotency scope ('' = none), to, subject, body,
--       data (JSON text), thread_id ('' = new thread or reply_to's), reply_to ('' = none), inbox_max
-- returns: {'ok'|'duplicate', JSON {id, thread, recipients, full, absent}}
--        | {'not_found', message, hint} | {'inbox_full', message}
--@include keys.lua
--@include common.lua
--@include inbox.lua

local sender, idem, to, subject, body, data = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local thread, reply_to, inbox_max = ARGV[10], ARGV[11], tonumber(ARGV[12])
if idem ~= '' then
  local first = redis.call('GET', K_IDEM .. idem)
  if first then return { 'duplicate', first } end
end
local now = now_ms()

local recipients, absent = {}, {}
if to == '*' or string.sub(to, 1, 5) == 'role:' then
  local role = to ~= '*' and string.sub(to, 6) or nil
  for _, agent in ipairs(redis.call('ZRANGEBYSCORE', K_AGENTS, '(' .. now, '+inf')) do
    if agent ~= sender then
      local wanted = role == nil
      if not wanted then
        for _, cap in ipairs(split(redis.call('HGET', K_AGENT .. agent, 'caps'))) do
          if cap == role then wanted = true end
        end
      end
      if wanted then recipients[#recipients + 1] = agent end
    end
  end
  if #recipients == 0 then
    return { 'not_found', role and ('no live agent other than you has capability ' .. role)
      or 'no live agent other than you is on the bus', 'list_agents shows who is alive and their ' ..
      'capabilities. A message to an agent id waits in its inbox even while that agent is away.' }
  end
else
  recipients[1] = to
  local expires = redis.call('ZSCORE', K_AGENTS, to)
  if not expires or tonumber(expires) <= now then absent[1] = to end
end

if reply_to ~= '' then
  local original = redis.call('HGET', K_MSG .. reply_to, 'thread')
  if not original then
    return { 'not_found', 'message ' .. reply_to .. ' is unknown (or older than the retention)',
      'Pass the id of a message you received (read_inbox shows it), or pass thread_id instead.' }
  end
  if thread == '' then thread = original end
end

local seq = redis.call('HINCRBY', K_COUNTERS, 'message', 1)
local id = 'm-' .. seq
if thread == '' then thread = id end

local delivered, full = {}, {}
for _, agent in ipairs(recipients) do
  if redis.call('ZCARD', K_UNREAD .. agent) >= inbox_max then
    full[#full + 1] = agent
  else
    local entry = redis.call('XADD', K_INBOX .. agent, '*', 'id', id, 'from', sender, 'to', to,
      'subject', subject, 'body', body, 'data', data, 'thread', thread, 'reply_to', reply_to)
    redis.call('ZADD', K_UNREAD .. agent, seq, entry)
    trim_read(agent, inbox_max)
    delivered[#delivered + 1] = agent
    wake('inbox:' .. agent)
  end
end
if #delivered == 0 then
  return { 'inbox_full', 'the inbox of ' .. table.concat(full, ', ') .. ' holds ' .. inbox_max ..
    ' unread messages, the most it keeps' }
end

redis.call('HSET', K_MSG .. id, 'thread', thread, 'from', sender)
redis.call('PEXPIRE', K_MSG .. id, RETENTION_MS)
emit('message.sent', sender, { message = id, thread = thread, to = to, subject = subject,
  recipients = delivered, undelivered = #full > 0 and full or nil })
local result = cjson.encode({ id = id, thread = thread, recipients = delivered, full = full, absent = absent })
if idem ~= '' then redis.call('SET', K_IDEM .. idem, result, 'PX', RETENTION_MS) end
return { 'ok', result }
