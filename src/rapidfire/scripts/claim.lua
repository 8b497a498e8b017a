-- claim: take up to `limit` claimable batches of one shard and lease them.
--
-- A batch is claimable when its conversation's lease ran out (it is delivered
-- again, or dead-lettered once it has been delivered max_attempts times), or
-- when its ready time has come. Expired leases are served first, then ready
-- batches in deadline order.
--
-- This script learns the conversations it serves from the two indexes, so it
-- builds their keys itself (m:, b:, dl:, dm: under ARGV[5]). They carry
-- the shard's hash tag, so every key it touches is in the slot of its KEYS.
--
-- Those keys are not declared, so Redis Cluster cannot refuse the call when a
-- slot migration has moved some of them and not others: on the importing node
-- a conversation's keys may not have arrived yet, and read as missing. So a
-- conversation whose keys are missing is not written off at once: it is noted
-- in KEYS[5] and looked at again every MISSING_RECHECK ms; only when its keys
-- are still missing MISSING_GRACE ms after it was first noted have they
-- expired (counted in the stats, then cleaned up).
--
-- KEYS[1]  the shard's ready index      KEYS[2]  the shard's lease index
-- KEYS[3]  the shard's stats hash       KEYS[4]  the shard's dead-letter index
-- KEYS[5]  the shard's missing index (conversation -> first seen missing, ms)
-- ARGV[1]  now in ms, or '' for the server clock
-- ARGV[2]  limit          ARGV[3]  lease (ms)       ARGV[4]  max attempts
-- ARGV[5]  shard key prefix
-- ARGV[6]  shard settings: ttl|dead-letter ttl|wake channel|publish command|shard
-- Returns  {now, next deadline ms or -1, ready count, leased count,
--           expired batches, expired messages, dead-lettered,
--           {conversation, id, n, first, last, ready, why, attempt, token,
--            lease expiry, {messages...}}, ...}

local now = now_ms(ARGV[1])
local limit, lease, max_attempts = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ctx = shard_ctx(KEYS, ARGV[6])
ctx.prefix = ARGV[5]
local batches = {}
local expired_batches, expired_messages, dead = 0, 0, 0

-- The conversation's messages expired before anyone claimed them (workers
-- were away longer than the ttl). Its batch records outlive the messages, so
-- what was lost can be counted; then everything left of it goes.
local function expire(conv, keys, index)
  local batches, messages = 0, 0
  for _, raw in ipairs(redis.call('LRANGE', keys.b, 0, -1)) do
    batches = batches + 1
    messages = messages + parse(raw).n
  end
  if batches == 0 then
    batches = 1
  end
  redis.call('ZREM', index, conv)
  redis.call('DEL', keys.m, keys.b)
  expired_batches = expired_batches + batches
  expired_messages = expired_messages + messages
  redis.call('HINCRBY', ctx.stats, 'expired_batches', batches)
  redis.call('HINCRBY', ctx.stats, 'expired_messages', messages)
end

local function gone(keys)
  return redis.call('EXISTS', keys.m) == 0
end

local MISSING_GRACE, MISSING_RECHECK = 60000, 5000
local missing_index = KEYS[5]
local any_missing = redis.call('ZCARD', missing_index) > 0

-- The conversation's keys are missing: expired, or still on their way to this
-- node in a slot migration. Look again later unless the grace has run out.
local function missing(conv, keys, index)
  local since = tonumber(redis.call('ZSCORE', missing_index, conv))
  if not since then
    redis.call('ZADD', missing_index, now, conv)
    redis.call('PEXPIRE', missing_index, ctx.ttl * 4)
    any_missing = true
    since = now
  end
  if now - since < MISSING_GRACE then
    redis.call('ZADD', index, now + MISSING_RECHECK, conv)
    return
  end
  redis.call('ZREM', missing_index, conv)
  expire(conv, keys, index)
end

local function deliver(conv, keys, head, why, ready)
  if any_missing then
    redis.call('ZREM', missing_index, conv)
  end
  head.open, head.why, head.ready = false, why, ready
  head.attempt = head.attempt + 1
  local token = redis.call('HINCRBY', ctx.stats, 'fence', 1)
  head.token = fmt(token)
  redis.call('LSET', keys.b, 0, encode(head))
  redis.call('ZREM', ctx.ready, conv)
  redis.call('ZADD', ctx.leased, now + lease, conv)
  redis.call('HINCRBY', ctx.stats, 'claimed', 1)
  redis.call('HINCRBY', ctx.stats, 'ready_' .. why, 1)
  touch(keys, ctx.ttl)
  table.insert(batches, {
    conv, head.id, head.n, head.first, head.last, head.ready, why,
    head.attempt, token, now + lease, redis.call('LRANGE', keys.m, 0, head.n - 1),
  })
end

local expired = redis.call('ZRANGEBYSCORE', ctx.leased, '-inf', now,
  'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #expired, 2 do
  local conv, until_ms = expired[i], tonumber(expired[i + 1])
  local keys = conversation_keys(ctx.prefix, conv)
  local raw = redis.call('LINDEX', keys.b, 0)
  if not raw or gone(keys) then
    missing(conv, keys, ctx.leased)
  else
    local head = parse(raw)
    if head.attempt >= max_attempts then
      local err = head.error
      if err == '' then err = 'lease expired' end
      dead_letter(ctx, conv, keys, head, err, now,
        ctx.prefix .. 'dl:' .. head.id, ctx.prefix .. 'dm:' .. head.id)
      dead = dead + 1
    else
      deliver(conv, keys, head, 'lease_expired', until_ms)
    end
  end
end

local room = limit - #batches
if room > 0 then
  local ready = redis.call('ZRANGEBYSCORE', ctx.ready, '-inf', now, 'LIMIT', 0, room)
  for _, conv in ipairs(ready) do
    local keys = conversation_keys(ctx.prefix, conv)
    local raw = redis.call('LINDEX', keys.b, 0)
    if not raw or gone(keys) then
      missing(conv, keys, ctx.ready)
    elseif redis.call('ZSCORE', ctx.leased, conv) then
      redis.call('ZREM', ctx.ready, conv)
    else
      local head = parse(raw)
      deliver(conv, keys, head, head.why, head.ready)
    end
  end
end

local next_ms = -1
local r = redis.call('ZRANGE', ctx.ready, 0, 0, 'WITHSCORES')
local l = redis.call('ZRANGE', ctx.leased, 0, 0, 'WITHSCORES')
if r[2] then next_ms = tonumber(r[2]) end
if l[2] and (next_ms < 0 or tonumber(l[2]) < next_ms) then next_ms = tonumber(l[2]) end
if #batches > 0 or dead > 0 or expired_batches > 0 then
  touch_shard(ctx)
end
local result = {
  now, next_ms, redis.call('ZCARD', ctx.ready), redis.call('ZCARD', ctx.leased),
  expired_batches, expired_messages, dead,
}
for _, b in ipairs(batches) do
  table.insert(result, b)
end
return result
