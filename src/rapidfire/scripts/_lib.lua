-- Shared helpers, prepended to every rapidfire script before it is loaded.
--
-- A conversation's batches live in a LIST of records, oldest first. Each record
-- is one string:  id|n|first|last|ready|why|open|attempt|token|error
--   id       batch id, stable across redeliveries
--   n        number of messages; they are the next n entries of the message list
--   first    server time (ms) of the first push into the batch
--   last     server time (ms) of the latest push into the batch
--   ready    server time (ms) at which the batch may be claimed
--   why      why it is (or will be) ready: quiet, max_wait, max_size, flush,
--            retry, lease_expired, requeued
--   open     1 while pushes may still join it (only the last record can be open)
--   attempt  deliveries so far
--   token    fencing token of the lease on it, '' when it is not leased
--   error    the last error a handler reported for it ('' for none); the
--            rest of the record, so it may contain '|'
-- A conversation has no other per-conversation state: a claim writes only to
-- keys that exist (its records and messages), so that on a cluster it never
-- creates a key that a slot migration is about to bring in from elsewhere.
-- Only the first record (the head) is ever claimable. While it is leased the
-- conversation sits in the shard's lease index, otherwise in its ready index.

local function now_ms(override)
  if override ~= '' then
    return tonumber(override)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function fmt(x)
  return string.format('%.0f', x)
end

-- Redis Cluster and slot migrations. While a slot migrates, a script runs on
-- the node it is leaving only if every key it declares is still there, and
-- fails half-way ("non local key") when it touches a key that is not: one
-- that had already moved, or one the script itself emptied (Redis deletes an
-- empty list or sorted set) and touches again. The scripts therefore
--   * keep a member SENTINEL at +inf in each of a shard's sorted sets (ready,
--     leased, dead, missing), so that they never empty;
--   * read what they need of a conversation's lists before they shorten
--     them, and do not touch a list again once it may be empty;
--   * (claim) read every conversation they will serve before writing any.
local SENTINEL = ''

-- ZADD that also keeps the sentinel: use it for every shard sorted set.
local function zadd(key, score, member)
  redis.call('ZADD', key, score, member, '+inf', SENTINEL)
end

-- Members of a shard's sorted set, the sentinel not counted.
local function zcard(key)
  return redis.call('ZCOUNT', key, '-inf', '(+inf')
end

-- The lowest score of a shard's sorted set, or nil when it holds none.
local function first_score(key)
  local r = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if r[1] and r[1] ~= SENTINEL then
    return tonumber(r[2])
  end
  return nil
end

local function parse(raw)
  local id, n, first, last, ready, why, open, attempt, token, err = string.match(
    raw, '^([^|]+)|(%d+)|(%-?%d+)|(%-?%d+)|(%-?%d+)|([%a_]+)|([01])|(%d+)|(%d*)|(.*)$')
  if not id then
    error('rapidfire: corrupt batch record: ' .. string.sub(raw, 1, 80))
  end
  return {
    id = id, n = tonumber(n), first = tonumber(first), last = tonumber(last),
    ready = tonumber(ready), why = why, open = (open == '1'),
    attempt = tonumber(attempt), token = token, error = err,
  }
end

-- Numbers concatenate as integers here: Lua prints them with 14 significant
-- digits, and millisecond timestamps have 13 until the year 5138.
local function encode(b)
  return b.id .. '|' .. b.n .. '|' .. b.first .. '|' .. b.last .. '|' .. b.ready
    .. '|' .. b.why .. '|' .. (b.open and '1' or '0') .. '|' .. b.attempt
    .. '|' .. (b.token or '') .. '|' .. (b.error or '')
end

-- Keys of one conversation, built from its shard prefix. Used only by scripts
-- that learn the conversation inside (claim); the key stays in the shard's slot
-- because the prefix carries the shard's hash tag.
local function conversation_keys(prefix, conv)
  return {
    m = prefix .. 'm:' .. conv,
    b = prefix .. 'b:' .. conv,
  }
end

-- Expiry. A write leaves a conversation's keys at least `ttl` to live: the
-- messages get 2 x ttl, the batch records 3 x ttl (so that a claim
-- that finds the messages gone can still count what expired). A key's expiry
-- is renewed only once less than 2 x ttl is left, which spares most writes
-- their PEXPIREs (PTTL is much cheaper). The shard's keys get 4 x ttl the same
-- way, so its indexes outlive every conversation in them.
local function renew(key, floor, ttl)
  local left = redis.call('PTTL', key)
  if left ~= -2 and left < floor then  -- -2: no such key, nothing to renew
    redis.call('PEXPIRE', key, ttl)
  end
end

-- The two keys are created together by push and renewed together, so the
-- records' PTTL speaks for both.
local function touch(keys, ttl)
  local left = redis.call('PTTL', keys.b)
  if left ~= -2 and left < ttl * 2 then
    redis.call('PEXPIRE', keys.m, ttl * 2)
    redis.call('PEXPIRE', keys.b, ttl * 3)
  end
end

-- Tell idle workers when a deadline becomes the earliest of the shard, so they
-- can sleep until then instead of polling. Payload: shard:deadline:server_now.
local function wake_if_earliest(ctx, score, now)
  local earliest = score
  local r, l = first_score(ctx.ready), first_score(ctx.leased)
  if r and r < earliest then earliest = r end
  if l and l < earliest then earliest = l end
  if score <= earliest then
    redis.call(ctx.publish, ctx.channel,
      ctx.shard .. ':' .. fmt(score) .. ':' .. fmt(now))
  end
end

-- Put the conversation's new head batch in the ready index: the record
-- `raw` that remove_head returned, or nil when the conversation has no batch
-- left. Called after an ack or a dead letter.
local function schedule_head(ctx, conv, raw, now)
  if not raw then
    redis.call('ZREM', ctx.ready, conv)
    return
  end
  local head = parse(raw)
  zadd(ctx.ready, head.ready, conv)
  wake_if_earliest(ctx, head.ready, now)
end

-- Holder check shared by ack, nack, extend and owns: the token must be the
-- conversation's current one and the lease must not have run out.
local function holds(ctx, conv, keys, token, batch_id, now)
  local until_ms = redis.call('ZSCORE', ctx.leased, conv)
  if not until_ms or tonumber(until_ms) <= now then
    return nil
  end
  local raw = redis.call('LINDEX', keys.b, 0)
  if not raw then
    return nil
  end
  local head = parse(raw)
  if head.id ~= batch_id or head.token ~= token then
    return nil
  end
  return head
end

-- Drop the head batch and its messages from the conversation. Returns the
-- next batch's record, or nil when none is left: then both lists are gone.
local function remove_head(ctx, conv, keys, head)
  local next_raw = redis.call('LINDEX', keys.b, 1)
  if next_raw then
    redis.call('LTRIM', keys.m, head.n, -1)
    redis.call('LPOP', keys.b)
  else
    redis.call('DEL', keys.m, keys.b)
  end
  redis.call('ZREM', ctx.leased, conv)
  return next_raw
end

-- Move the head batch to the shard's dead letters, keeping its messages and
-- the last error, then make the next batch of the conversation claimable.
-- Returns the next batch's record, or nil (see remove_head).
-- dl and dm are the dead letter's hash and message list (prefix .. 'dl:' .. id
-- and prefix .. 'dm:' .. id).
local function dead_letter(ctx, conv, keys, head, err, now, dl, dm)
  local msgs = redis.call('LRANGE', keys.m, 0, head.n - 1)
  redis.call('DEL', dm)
  for i = 1, #msgs, 1000 do
    redis.call('RPUSH', dm, unpack(msgs, i, math.min(i + 999, #msgs)))
  end
  redis.call('HSET', dl,
    'conversation', conv, 'n', head.n, 'first', fmt(head.first),
    'last', fmt(head.last), 'attempts', head.attempt, 'error', err,
    'reason', head.why, 'dead_at', fmt(now))
  redis.call('PEXPIRE', dl, ctx.dead_ttl)
  redis.call('PEXPIRE', dm, ctx.dead_ttl)
  -- Letters older than dead_ttl have expired on their own; drop their ids.
  redis.call('ZREMRANGEBYSCORE', ctx.dead, '-inf', '(' .. fmt(now - ctx.dead_ttl))
  zadd(ctx.dead, now, head.id)
  redis.call('PEXPIRE', ctx.dead, ctx.dead_ttl)
  local next_raw = remove_head(ctx, conv, keys, head)
  redis.call('HINCRBY', ctx.stats, 'dead_lettered', 1)
  redis.call('HINCRBY', ctx.stats, 'dead_messages', head.n)
  schedule_head(ctx, conv, next_raw, now)
  return next_raw
end

local function touch_shard(ctx)
  renew(ctx.ready, ctx.ttl * 3, ctx.ttl * 4)
  renew(ctx.leased, ctx.ttl * 3, ctx.ttl * 4)
  renew(ctx.stats, ctx.ttl * 3, ctx.ttl * 4)
end

-- The shard settings that every call of a script shares, sent as one
-- argument: ttl|dead-letter ttl|wake channel|publish command|shard.
local function shard_ctx(keys, text)
  local ttl, dead_ttl, channel, publish, shard = string.match(text,
    '^(%d+)|(%d+)|([^|]+)|(%u+)|(%d+)$')
  return {
    ready = keys[1], leased = keys[2], stats = keys[3], dead = keys[4],
    ttl = tonumber(ttl), dead_ttl = tonumber(dead_ttl), channel = channel,
    publish = publish, shard = shard,
  }
end
