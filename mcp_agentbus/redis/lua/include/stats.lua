-- Throughput and queue depth over the last hour, for the dashboard's charts (needs keys.lua only).
-- `throughput` counts, per minute (Redis ms // 60000), the tasks completed ('done:<minute>'), the
-- attempts that failed ('failed:<minute>': fail_task, and leases the reaper took back) and the tasks
-- that died ('dead:<minute>'). `depth` keeps one sample of the ready queues per minute ('<minute>' →
-- 'cap=n,cap=n'), taken by the reaper's first sweep of that minute (reap.lua runs only in the process
-- holding the reaper key, so there is one sample a minute per namespace). That same first sweep trims
-- both hashes to the last STATS_MINUTES minutes: at most 3 fields a minute, so the trim's HKEYS reads
-- about 3 * 61 fields once a minute.
local STATS_MINUTES = 60
local DEPTH_CAPS = 50 -- capabilities in one sample: the deepest queues (capabilities hold no ',' or '=')

local function count_throughput(kind, now)
  redis.call('HINCRBY', K_THROUGHPUT, kind .. ':' .. math.floor(now / 60000), 1)
end

local function trim_minutes(key, oldest)
  local old = {}
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if tonumber(string.match(field, '(%d+)$')) < oldest then old[#old + 1] = field end
  end
  if #old > 0 then redis.call('HDEL', key, unpack(old)) end
end

-- Once a minute: sample the ready queues (counters 'ready:<cap>', one field per capability with ready
-- tasks) and forget what is older than the hour.
local function keep_stats(now)
  local minute = math.floor(now / 60000)
  if redis.call('HEXISTS', K_DEPTH, minute) == 1 then return end
  local queues, counters = {}, redis.call('HGETALL', K_COUNTERS)
  for i = 1, #counters, 2 do
    local cap = string.match(counters[i], '^ready:(.+)$')
    if cap then queues[#queues + 1] = { cap, tonumber(counters[i + 1]) } end
  end
  table.sort(queues, function(a, b) return a[2] > b[2] end)
  local sample = {}
  for i = 1, math.min(#queues, DEPTH_CAPS) do sample[i] = queues[i][1] .. '=' .. queues[i][2] end
  redis.call('HSET', K_DEPTH, minute, table.concat(sample, ','))
  trim_minutes(K_DEPTH, minute - STATS_MINUTES + 1)
  trim_minutes(K_THROUGHPUT, minute - STATS_MINUTES + 1)
end
