-- flush: close the conversation's open batch and make it ready now.
--
-- KEYS[1]  m: message list     KEYS[2]  b: batch records
-- KEYS[3]  the shard's ready index      KEYS[4]  the shard's lease index
-- KEYS[5]  the shard's stats hash
-- ARGV[1]  now in ms, or '' for the server clock
-- ARGV[2]  conversation id
-- ARGV[3]  shard settings: ttl|dead-letter ttl|wake channel|publish command|shard
-- Returns  the number of messages in the flushed batch, 0 when none was open.
--          A flushed batch waiting behind one in flight is claimable once that
--          one is acknowledged.

local now = now_ms(ARGV[1])
local conv = ARGV[2]
local keys = {m = KEYS[1], b = KEYS[2]}
local ctx = shard_ctx({KEYS[3], KEYS[4], KEYS[5]}, ARGV[3])

local raw = redis.call('LINDEX', keys.b, -1)
if not raw then
  return 0
end
local tail = parse(raw)
if not tail.open then
  return 0
end
tail.open, tail.why, tail.ready = false, 'flush', now
redis.call('LSET', keys.b, -1, encode(tail))
if redis.call('LLEN', keys.b) == 1 and not redis.call('ZSCORE', ctx.leased, conv) then
  zadd(ctx.ready, now, conv)
  wake_if_earliest(ctx, now, now)
end
touch(keys, ctx.ttl)
touch_shard(ctx)
return tail.n
