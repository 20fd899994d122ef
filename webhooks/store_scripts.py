"""The webhook store's Lua scripts (webhooks/store.py owns the layout they write).

Each runs as one Redis call, so a delivery's hash, its due set and its log change
together. They build key names from the prefix in ARGV[1]; the caller declares in
KEYS those it can name beforehand, and on a Redis Cluster all share one hash tag.
"""

# Every script that makes a delivery due goes through this: its due set by second,
# that second in the index, and the second's oldest creation time (for the metric).
DUE = """
local function make_due(p, id, at, created)
  local bucket = math.floor(at / 1000)
  redis.call('SADD', p .. 'webhook:due:' .. bucket, id)
  redis.call('ZADD', p .. 'webhook:due:index', bucket, bucket)
  local oldest_key = p .. 'webhook:due:oldest'
  local oldest = tonumber(redis.call('HGET', oldest_key, bucket) or created)
  redis.call('HSET', oldest_key, bucket, math.min(oldest, created))
end
"""

CREATE = (
    DUE
    + """
local p, now, lease_until, log_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local retries, token = ARGV[5], ARGV[6]
local created = {}
for i = 7, #ARGV, 5 do
  local id, endpoint = ARGV[i], ARGV[i + 1]
  local key = p .. 'webhook:delivery:' .. id
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'endpoint_id', endpoint, 'output_id', ARGV[i + 2],
               'type', ARGV[i + 3], 'data', ARGV[i + 4], 'status', 'pending',
               'attempts', 0, 'retries_left', retries, 'next_at', lease_until,
               'created_at', now, 'lease', token)
    redis.call('PEXPIRE', key, log_ms)
    make_due(p, id, lease_until, now)
    local log = p .. 'webhook:log:' .. endpoint .. ':' .. math.floor(now / 3600000)
    redis.call('ZADD', log, now, id)
    redis.call('PEXPIRE', log, log_ms + 3600000)
    created[#created + 1] = id
  end
end
return created
"""
)

CLAIM = (
    DUE
    + """
local p, now, lease_ms, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local index = p .. 'webhook:due:index'
local until_ = now + lease_ms
local claimed = {}
for _, bucket in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', math.floor(now / 1000))) do
  local set = p .. 'webhook:due:' .. bucket
  for _, id in ipairs(redis.call('SMEMBERS', set)) do
    if #claimed >= limit * 5 then return claimed end
    local key = p .. 'webhook:delivery:' .. id
    local d = redis.call('HMGET', key, 'status', 'next_at')
    if d[1] == false or d[1] == 'succeeded' or d[1] == 'failed' then
      redis.call('SREM', set, id)
    elseif tonumber(d[2]) <= now then
      local token = ARGV[5 + #claimed / 5]
      redis.call('SREM', set, id)
      redis.call('HSET', key, 'next_at', until_, 'lease', token)
      local d2 = redis.call('HMGET', key, 'endpoint_id', 'output_id', 'data', 'created_at')
      make_due(p, id, until_, tonumber(d2[4]))
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = token
      claimed[#claimed + 1] = d2[1]
      claimed[#claimed + 1] = d2[2]
      claimed[#claimed + 1] = d2[3]
    end
  end
  if redis.call('SCARD', set) == 0 then
    redis.call('ZREM', index, bucket)
    redis.call('HDEL', p .. 'webhook:due:oldest', bucket)
  end
end
return claimed
"""
)

# Outcomes of many deliveries in one call. ARGV: prefix, now, log_ms, the schedule's
# length n, its n steps (ms), then per delivery 8 values: id, lease token, outcome
# (succeeded|failed|retry|defer), next_at (for defer), attempt JSON ('' for defer),
# endpoint id, latency bucket, latency (ms). `retry` becomes `failed` when no
# retries are left, else is due after the schedule's next step. A delivery whose
# lease was taken over is left alone ('lost'). Returns each one's final outcome.
FINISH = (
    DUE
    + """
local p, now, log_ms, n = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local results = {}
for i = 5 + n, #ARGV, 8 do
  local id, token, outcome, next_at = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local attempt = ARGV[i + 4]
  local key = p .. 'webhook:delivery:' .. id
  local d = redis.call('HMGET', key, 'lease', 'next_at', 'retries_left', 'created_at')
  if d[1] ~= token then
    results[#results + 1] = 'lost'
  else
    redis.call('SREM', p .. 'webhook:due:' .. math.floor(tonumber(d[2]) / 1000), id)
    if outcome == 'retry' then
      local left = tonumber(d[3] or 0)
      if left <= 0 then
        outcome = 'failed'
      else
        next_at = now + tonumber(ARGV[4 + n - left + 1])
      end
    end
    if outcome == 'succeeded' or outcome == 'failed' then
      redis.call('HSET', key, 'status', outcome, 'lease', '')
    else
      redis.call('HSET', key, 'next_at', next_at, 'lease', '')
      if outcome == 'retry' then
        redis.call('HSET', key, 'status', 'scheduled')
        redis.call('HINCRBY', key, 'retries_left', -1)
      end
      make_due(p, id, next_at, tonumber(d[4]))
    end
    if attempt ~= '' then
      local attempts = p .. 'webhook:attempts:' .. id
      redis.call('HINCRBY', key, 'attempts', 1)
      redis.call('RPUSH', attempts, attempt)
      redis.call('PEXPIRE', attempts, log_ms)
      redis.call('HINCRBY', p .. 'stats:webhook_deliveries', ARGV[i + 5] .. '|' .. outcome, 1)
      local latency = p .. 'stats:webhook_latency'
      redis.call('HINCRBY', latency, ARGV[i + 6], 1)
      redis.call('HINCRBY', latency, 'count', 1)
      redis.call('HINCRBY', latency, 'sum', ARGV[i + 7])
    end
    redis.call('PEXPIRE', key, log_ms)
    results[#results + 1] = outcome
  end
end
return results
"""
)

# A failed delivery, retried by hand: one more attempt, due now.
RETRY = (
    DUE
    + """
local p, id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local key = p .. 'webhook:delivery:' .. id
local status = redis.call('HGET', key, 'status')
if not status then return 'missing' end
if status ~= 'failed' then return status end
redis.call('HSET', key, 'status', 'scheduled', 'next_at', now, 'retries_left', 0, 'lease', '')
make_due(p, id, now, tonumber(redis.call('HGET', key, 'created_at')))
return 'ok'
"""
)

# An endpoint and its place in the set of endpoints, together. KEYS: the endpoint's
# hash, the set; ARGV: its id, then the hash's field/value pairs ('' pairs: delete).
# (A script, not MULTI: it is atomic on a Redis Cluster too, where redis-py's
# asyncio transactions leave a connection that fails the client's close.)
SAVE_ENDPOINT = """
if #ARGV == 1 then
  redis.call('SREM', KEYS[2], ARGV[1])
  return redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return redis.call('SADD', KEYS[2], ARGV[1])
"""
