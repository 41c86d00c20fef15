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
-- The wake-ups name the topic, and the workflow it concerns, for waiters and resource subscribers.
local function emit(topic, agent, data)
  local workflow
  if type(data) == 'table' then
    workflow = data.workflow
    data = cjson.encode(data)
  end
  local id = redis.call('XADD', K_EVENTS, 'MAXLEN', '~', EVENTS_MAX, '*', 'topic', topic, 'agent', agent or '',
    'data', data)
  wake('event:' .. topic)
  if type(workflow) == 'string' and workflow ~= '' then wake('workflow:' .. workflow) end
  return id
end

-- Tell `agent` (in the notices of its next tool call) that something it held was taken back.
local function tell_lost(agent, what)
  redis.call('RPUSH', K_LOST .. agent, what)
  redis.call('LTRIM', K_LOST .. agent, -50, -1)
  redis.call('PEXPIRE', K_LOST .. agent, RETENTION_MS)
end

local function split(csv)
  local out = {}
  if csv and csv ~= '' then
    for item in string.gmatch(csv, '[^,]+') do out[#out + 1] = item end
  end
  return out
end
