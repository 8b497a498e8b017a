-- nack: the holder of a batch gives it back to be delivered again later, or,
-- once it has been delivered max_attempts times, moves it to the dead letters.
--
-- KEYS[1]  m: message list     KEYS[2]  b: batch records
-- KEYS[3]  the shard's ready index      KEYS[4]  the shard's lease index
-- KEYS[5]  the shard's stats hash       KEYS[6]  the shard's dead-letter index
-- KEYS[7]  dl: this batch's dead-letter hash
-- KEYS[8]  dm: this batch's dead-letter message list
-- ARGV[1]  now in ms, or '' for the server clock
-- ARGV[2]  conversation id     ARGV[3]  fencing token      ARGV[4]  batch id
-- ARGV[5]  delay (ms)          ARGV[6]  error text         ARGV[7]  max attempts
-- ARGV[8]  1 to count this delivery as an attempt, 0 to give it back unused
-- ARGV[9]  shard settings: ttl|dead-letter ttl|wake channel|publish command|shard
-- Returns  'retry', 'dead', or 'lost' when the caller no longer holds the batch.

local now = now_ms(ARGV[1])
local conv = ARGV[2]
local keys = {m = KEYS[1], b = KEYS[2]}
local ctx = shard_ctx({KEYS[3], KEYS[4], KEYS[5], KEYS[6]}, ARGV[9])

local head = holds(ctx, conv, keys, ARGV[3], ARGV[4], now)
if not head then
  return 'lost'
end
local counted = ARGV[8] == '1'
if counted and head.attempt >= tonumber(ARGV[7]) then
  dead_letter(ctx, conv, keys, head, ARGV[6], now, KEYS[7], KEYS[8])
  touch_shard(ctx)
  return 'dead'
end

if not counted then
  head.attempt = head.attempt - 1
end
head.why, head.ready, head.token = 'retry', now + tonumber(ARGV[5]), ''
if ARGV[6] ~= '' then
  head.error = ARGV[6]
end
redis.call('LSET', keys.b, 0, encode(head))
redis.call('ZREM', ctx.leased, conv)
zadd(ctx.ready, head.ready, conv)
redis.call('HINCRBY', ctx.stats, counted and 'retried' or 'released', 1)
wake_if_earliest(ctx, head.ready, now)
touch(keys, ctx.ttl)
touch_shard(ctx)
return 'retry'
