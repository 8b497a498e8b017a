-- requeue: bring a dead-lettered batch back to its conversation, ready now,
-- with its attempts reset. It goes before every batch of the conversation that
-- is not in flight, so it keeps its place in push order as far as possible.
--
-- KEYS[1]  m: message list     KEYS[2]  b: batch records
-- KEYS[3]  the shard's ready index      KEYS[4]  the shard's lease index
-- KEYS[5]  the shard's stats hash       KEYS[6]  the shard's dead-letter index
-- KEYS[7]  dl: the dead letter's hash   KEYS[8]  dm: its message list
-- ARGV[1]  now in ms, or '' for the server clock
-- ARGV[2]  dead letter (batch) id
-- ARGV[3]  shard settings: ttl|dead-letter ttl|wake channel|publish command|shard
-- ARGV[4]  conversation id the caller built KEYS[1..2] for
-- Returns  the number of messages requeued, 0 when there is no such dead letter.

local now = now_ms(ARGV[1])
local id = ARGV[2]
local keys = {m = KEYS[1], b = KEYS[2]}
local ctx = shard_ctx({KEYS[3], KEYS[4], KEYS[5], KEYS[6]}, ARGV[3])

if not redis.call('ZSCORE', KEYS[6], id) then
  return 0
end
local conv = redis.call('HGET', KEYS[7], 'conversation')
if conv ~= ARGV[4] then
  error('rapidfire: dead letter ' .. id .. ' belongs to another conversation')
end
local msgs = redis.call('LRANGE', KEYS[8], 0, -1)
local rec = {
  id = id, n = #msgs, first = tonumber(redis.call('HGET', KEYS[7], 'first')),
  last = tonumber(redis.call('HGET', KEYS[7], 'last')), ready = now,
  why = 'requeued', open = false, attempt = 0, token = '', error = '',
}

-- The requeued batch goes first, or right after the batch in flight. A list
-- is never emptied on the way (see _lib.lua): with nothing after the batch in
-- flight it is appended; otherwise the batch in flight is lifted off the
-- front, the requeued one put there, and the one in flight put back.
local leased = redis.call('ZSCORE', ctx.leased, conv)
if leased and redis.call('LLEN', keys.b) == 1 then
  for i = 1, #msgs, 1000 do
    redis.call('RPUSH', keys.m, unpack(msgs, i, math.min(i + 999, #msgs)))
  end
  redis.call('RPUSH', keys.b, encode(rec))
else
  local held_msgs, held_rec = {}, nil
  if leased then
    held_rec = redis.call('LPOP', keys.b)
    local held = parse(held_rec)
    if held.n > 0 then
      held_msgs = redis.call('LPOP', keys.m, held.n)
    end
  end
  for i = #msgs, 1, -1 do
    redis.call('LPUSH', keys.m, msgs[i])
  end
  redis.call('LPUSH', keys.b, encode(rec))
  if held_rec then
    for i = #held_msgs, 1, -1 do
      redis.call('LPUSH', keys.m, held_msgs[i])
    end
    redis.call('LPUSH', keys.b, held_rec)
  else
    zadd(ctx.ready, now, conv)
    wake_if_earliest(ctx, now, now)
  end
end

redis.call('HINCRBY', ctx.stats, 'requeued', 1)
redis.call('HINCRBY', ctx.stats, 'requeued_messages', #msgs)
redis.call('ZREM', KEYS[6], id)
redis.call('DEL', KEYS[7], KEYS[8])
touch(keys, ctx.ttl)
touch_shard(ctx)
return #msgs
