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
-- slot migration has moved some of them and not others. On the node the slot
-- is leaving, touching a key that already left fails the script: so the
-- script first reads every conversation it will serve, and writes only once
-- all of them were readable (see _lib.lua). On the importing node, keys that
-- have not arrived yet read as missing: so a conversation whose keys are
-- missing is not written off at once. It is noted in KEYS[5] and looked at
-- again every MISSING_RECHECK ms; only when its keys are still missing
-- MISSING_GRACE ms after it was first noted have they expired (counted in the
-- stats, then cleaned up).
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
local missing_index = KEYS[5]
local MISSING_GRACE, MISSING_RECHECK = 60000, 5000
local batches = {}
local expired_batches, expired_messages, dead = 0, 0, 0

-- The shard's sorted sets exist from the first claim on, each with its
-- sentinel (see _lib.lua), so that a migration finds them on the node.
for _, key in ipairs({ctx.ready, ctx.leased, ctx.dead, missing_index}) do
  if redis.call('ZADD', key, 'NX', '+inf', SENTINEL) == 1 then
    redis.call('PEXPIRE', key, key == ctx.dead and ctx.dead_ttl or ctx.ttl * 4)
  end
end
local any_missing = zcard(missing_index) > 0

-- 1. Read, expired leases first: for each, its head record and whether its
-- messages are there.
local function read(c)
  c.keys = conversation_keys(ctx.prefix, c.conv)
  c.raw = c.raw or redis.call('LINDEX', c.keys.b, 0)
  c.gone = not c.raw or redis.call('EXISTS', c.keys.m) == 0
  c.since = any_missing and redis.call('ZSCORE', missing_index, c.conv) or false
  return c
end
local candidates = {}
local expired = redis.call('ZRANGEBYSCORE', ctx.leased, '-inf', now,
  'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #expired, 2 do
  table.insert(candidates, read({conv = expired[i],
    until_ms = tonumber(expired[i + 1]), index = ctx.leased}))
end

-- 2. Write.

-- The conversation's messages expired before anyone claimed them (workers
-- were away longer than the ttl). Its batch records outlive the messages, so
-- what was lost can be counted; then everything left of it goes.
local function expire(c)
  local n_batches, n_messages = 0, 0
  if c.raw then
    for _, raw in ipairs(redis.call('LRANGE', c.keys.b, 0, -1)) do
      n_batches = n_batches + 1
      n_messages = n_messages + parse(raw).n
    end
  end
  if n_batches == 0 then
    n_batches = 1
  end
  redis.call('ZREM', c.index, c.conv)
  redis.call('DEL', c.keys.m, c.keys.b)
  expired_batches = expired_batches + n_batches
  expired_messages = expired_messages + n_messages
  redis.call('HINCRBY', ctx.stats, 'expired_batches', n_batches)
  redis.call('HINCRBY', ctx.stats, 'expired_messages', n_messages)
end

-- The conversation's keys are missing: expired, or still on their way to this
-- node in a slot migration. Look again later unless the grace has run out.
local function missing(c)
  local since = c.since and tonumber(c.since)
  if not since then
    zadd(missing_index, now, c.conv)
    redis.call('PEXPIRE', missing_index, ctx.ttl * 4)
    since = now
  end
  if now - since < MISSING_GRACE then
    zadd(c.index, now + MISSING_RECHECK, c.conv)
    return
  end
  redis.call('ZREM', missing_index, c.conv)
  expire(c)
end

local function deliver(c, head, why, ready)
  if c.since then
    redis.call('ZREM', missing_index, c.conv)
  end
  head.open, head.why, head.ready = false, why, ready
  head.attempt = head.attempt + 1
  local token = redis.call('HINCRBY', ctx.stats, 'fence', 1)
  head.token = fmt(token)
  redis.call('LSET', c.keys.b, 0, encode(head))
  redis.call('ZREM', ctx.ready, c.conv)
  zadd(ctx.leased, now + lease, c.conv)
  redis.call('HINCRBY', ctx.stats, 'claimed', 1)
  redis.call('HINCRBY', ctx.stats, 'ready_' .. why, 1)
  touch(c.keys, ctx.ttl)
  table.insert(batches, {
    c.conv, head.id, head.n, head.first, head.last, head.ready, why,
    head.attempt, token, now + lease,
    redis.call('LRANGE', c.keys.m, 0, head.n - 1),
  })
end

-- Dead letters first: a dead letter creates keys, which a slot migration can
-- refuse; refused before anything else was written, the claim did nothing.
for _, c in ipairs(candidates) do
  if not c.gone then
    local head = parse(c.raw)
    if head.attempt >= max_attempts then
      local err = head.error
      if err == '' then err = 'lease expired' end
      dead_letter(ctx, c.conv, c.keys, head, err, now,
        ctx.prefix .. 'dl:' .. head.id, ctx.prefix .. 'dm:' .. head.id)
      dead = dead + 1
      c.done = true
    end
  end
end

-- Then the ready batches, in deadline order, as many as there is room for
-- (a dead letter's next batch among them). Read them all before writing.
local room = limit
for _, c in ipairs(candidates) do
  if not c.done and not c.gone then
    room = room - 1  -- an expired lease delivered again
  end
end
if room > 0 then
  for _, conv in ipairs(redis.call('ZRANGEBYSCORE', ctx.ready, '-inf', now,
      'LIMIT', 0, room)) do
    table.insert(candidates, read({conv = conv, index = ctx.ready,
      leased = redis.call('ZSCORE', ctx.leased, conv)}))
  end
end

for _, c in ipairs(candidates) do
  if c.done then
    -- dead-lettered above
  elseif c.gone then
    missing(c)
  elseif c.until_ms then
    deliver(c, parse(c.raw), 'lease_expired', c.until_ms)
  elseif c.leased then
    redis.call('ZREM', ctx.ready, c.conv)
  else
    local head = parse(c.raw)
    deliver(c, head, head.why, head.ready)
  end
end

local next_ms = -1
local r, l = first_score(ctx.ready), first_score(ctx.leased)
if r then next_ms = r end
if l and (next_ms < 0 or l < next_ms) then next_ms = l end
if #batches > 0 or dead > 0 or expired_batches > 0 then
  touch_shard(ctx)
end
local result = {
  now, next_ms, zcard(ctx.ready), zcard(ctx.leased),
  expired_batches, expired_messages, dead,
}
for _, b in ipairs(batches) do
  table.insert(result, b)
end
return result
