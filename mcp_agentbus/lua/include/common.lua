-- Helpers shared by every script: server time, events, wake-ups, list fields.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Wake-ups are hints for waiters in any server process; Redis state stays the truth.
local woken = {}
local function wake(what)
  if not woken[what] then
    woken[what] = true
    redis.call('PUBLISH', K_WAKE, what)
  end
end

-- Every state change appends its event here, in the same script; `data` is a table or JSON text.
local function emit(topic, agent, data)
  if type(data) == 'table' then data = cjson.encode(data) end
  local id = redis.call('XADD', K_EVENTS, 'MAXLEN', '~', EVENTS_MAX, '*', 'topic', topic, 'agent', agent or '',
    'data', data)
  wake('event:' .. topic)
  return id
end

local function split(csv)
  local out = {}
  if csv and csv ~= '' then
    for item in string.gmatch(csv, '[^,]+') do out[#out + 1] = item end
  end
  return out
end
