-- Helpers shared by every script: server time, events, wake-ups, list fields.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function emit(topic, agent, data)
  return redis.call('XADD', K_EVENTS, 'MAXLEN', '~', EVENTS_MAX, '*',
    'topic', topic, 'agent', agent or '', 'data', cjson.encode(data))
end

-- Wake-ups are hints for waiting claimers in any server process; Redis state stays the truth.
local woken = {}
local function wake(what)
  if not woken[what] then
    woken[what] = true
    redis.call('PUBLISH', K_WAKE, what)
  end
end

local function split(csv)
  local out = {}
  if csv and csv ~= '' then
    for item in string.gmatch(csv, '[^,]+') do out[#out + 1] = item end
  end
  return out
end
