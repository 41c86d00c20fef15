-- send_message: deliver one message into the inbox of each recipient: an agent id, every live agent
-- with a capability ('role:<capability>'), or every live agent ('*'); the sender is left out of the
-- last two. An inbox whose unread messages reached a limit (inbox_max, INBOX_MAX_BYTES) refuses it
-- (never drops an unread one). A copy to '*' or a role is bounded by FANOUT_MAX_BYTES; an agent not
-- live gets an idle inbox (it expires after the retention), at most IDLE_INBOXES_MAX of them, and at
-- most IDLE_INBOXES_MAX_PER_OWNER opened by the call's owner. A reply_to is a message the sender's own
-- inbox keeps (no record outlives the inboxes that hold a message); its thread is the reply's default.
-- KEYS: the namespace's prefix (keys.lua makes the layout's keys from it)
-- ARGV: bounds (scripts.BOUNDS, comma list), retention_ms, caller, sender, idempotency scope ('' = none), to, subject, body,
--       data (JSON text), thread_id ('' = new thread or reply_to's), reply_to ('' = none), inbox_max,
--       max_recipients (live agents a role: or * message may reach)
-- returns: {'ok'|'duplicate', JSON {id, thread, recipients, full, absent}}
--        | {'not_found' | 'invalid_argument', message, hint} | {'inbox_full', message}
--@include keys.lua
--@include common.lua
--@include inbox.lua

local sender, idem, to, subject, body, data = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local thread, reply_to, inbox_max, max_recipients = ARGV[10], ARGV[11], tonumber(ARGV[12]), tonumber(ARGV[13])
if idem ~= '' then
  local first = redis.call('GET', K_IDEM .. idem)
  if first then return { 'duplicate', first } end
end
local now = now_ms()

local recipients, absent = {}, {}
if to == '*' or string.sub(to, 1, 5) == 'role:' then
  local role = to ~= '*' and string.sub(to, 6) or nil
  -- Looking at every live agent is bounded: past max_recipients of them, a message to all is refused.
  local live = redis.call('ZRANGEBYSCORE', K_AGENTS, '(' .. now, '+inf', 'LIMIT', 0, max_recipients + 1)
  if #live > max_recipients then
    return { 'invalid_argument', 'more than ' .. max_recipients .. ' agents are live: a message to ' .. to ..
      ' would be copied into too many inboxes', 'publish_event it once for every agent to read ' ..
      '(read_events), or send it to the agents that need it.' }
  end
  for _, agent in ipairs(live) do
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

local size = message_bytes({ from = sender, to = to, subject = subject, body = body, data = data,
  reply_to = reply_to })
if size > INBOX_MAX_BYTES then
  return { 'invalid_argument', 'this message is charged ' .. size .. ' bytes; an inbox keeps at most ' ..
    INBOX_MAX_BYTES, 'Send a shorter body or data, and put large content elsewhere (a file, a task ' ..
    'payload) with a reference to it in the message.' }
end
if #recipients > 1 and #recipients * size > FANOUT_MAX_BYTES then
  return { 'invalid_argument', 'sending this message to ' .. to .. ' copies it into ' .. #recipients ..
    ' inboxes, ' .. #recipients * size .. ' bytes; one message may copy at most ' .. FANOUT_MAX_BYTES,
    'Shorten the body and data, send to fewer agents (role:<capability>), or publish_event it once ' ..
    'for all to read (or create_task, if it is work to do).' }
end
local opener -- the owner charged for the idle inbox this message opens, if it opens one
if #absent > 0 and redis.call('EXISTS', K_INBOX .. to) == 0 then
  forget_expired_inboxes(now, 10)
  if redis.call('ZCARD', K_INBOXES_IDLE) >= IDLE_INBOXES_MAX then
    return { 'invalid_argument', to .. ' is not live and has no inbox, and ' .. IDLE_INBOXES_MAX ..
      ' inboxes already wait for agents that are not live (the most this namespace keeps)',
      'Check the id with list_agents: an agent that never heartbeats reads nothing. Send once it is ' ..
      'live, or reach it another way (a task, an event). Idle inboxes expire after the retention.' }
  end
  opener = owner_for(sender)
  local has = owned_count(K_OWNED_INBOXES .. opener, now)
  if has >= IDLE_INBOXES_MAX_PER_OWNER then
    return over_share(opener, has, IDLE_INBOXES_MAX_PER_OWNER, 'inboxes waiting for agents that are not ' ..
      'live', to .. ' is not live and has no inbox; the message was not sent', 'Check the id with ' ..
      'list_agents: an agent that never heartbeats reads nothing. Send once it is live, or reach it ' ..
      'another way (a task, an event). An inbox stops counting once its agent is live, or expires.',
      'IDLE_INBOXES_MAX_PER_OWNER')
  end
end

if reply_to ~= '' then
  local original = received(sender, reply_to)
  if not original then
    return { 'not_found', 'message ' .. reply_to .. ' is not in the inbox of ' .. sender .. ': reply_to names a ' ..
      'message you received that your inbox still keeps', 'Pass the id of a message read_inbox gave you, or ' ..
      'pass thread_id instead (the thread_id of the message you answer, or of one you sent).' }
  end
  if thread == '' then thread = original.thread end
end

-- Which inboxes have room (trimming read messages makes it; unread ones alone may leave none), decided
-- before anything is written, so a refused message leaves no trace (a full inbox keeps its read ones).
local delivered, full, trims = {}, {}, {}
for _, agent in ipairs(recipients) do
  local victims, bytes
  if redis.call('ZCARD', K_UNREAD .. agent) < inbox_max then -- else no need to look for read ones
    victims, bytes = read_to_trim(agent, inbox_max - 1, INBOX_MAX_BYTES - size)
  end
  if victims == nil or bytes + size > INBOX_MAX_BYTES then
    full[#full + 1] = agent
  else
    delivered[#delivered + 1] = agent
    trims[agent] = { victims, bytes }
  end
end
if #delivered == 0 then
  return { 'inbox_full', 'the inbox of ' .. table.concat(full, ', ') .. ' holds as many unread messages ' ..
    'as it keeps (' .. inbox_max .. ' messages or ' .. INBOX_MAX_BYTES .. ' bytes)' }
end
for _, agent in ipairs(delivered) do drop_read(agent, trims[agent][1], trims[agent][2]) end

local seq = redis.call('HINCRBY', K_COUNTERS, 'message', 1)
local id = 'm-' .. seq
if thread == '' then thread = id end

for _, agent in ipairs(delivered) do
  local entry = redis.call('XADD', K_INBOX .. agent, '*', 'id', id, 'from', sender, 'to', to,
    'subject', subject, 'body', body, 'data', data, 'thread', thread, 'reply_to', reply_to)
  redis.call('ZADD', K_UNREAD .. agent, seq, entry)
  redis.call('HINCRBY', K_INBOX_BYTES, agent, size)
  wake('inbox:' .. agent)
  wake('message:' .. agent) -- news that ends the agent's other waits (core/wakeups.py)
end
for _, agent in ipairs(absent) do
  park_inbox(agent, now)
  charge_inbox(agent, opener, now)
end

emit('message.sent', sender, { message = id, thread = thread, to = to, subject = subject,
  recipients = delivered, undelivered = #full > 0 and full or nil })
local result = cjson.encode({ id = id, thread = thread, recipients = delivered, full = full, absent = absent })
if idem ~= '' then redis.call('SET', K_IDEM .. idem, result, 'PX', RETENTION_MS) end
return { 'ok', result }
