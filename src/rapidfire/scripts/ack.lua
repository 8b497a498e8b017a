-- ack: the holder of a batch reports it handled; the batch and its messages go.
--
-- KEYS[1]  m: message list     KEYS[2]  b: batch records
-- KEYS[3]  the shard's ready index      KEYS[4]  the shard's lease index
-- KEYS[5]  the shard's stats hash
-- ARGV[1]  now in ms, or '' for the server clock
-- ARGV[2]  conversation id     ARGV[3]  fencing token      ARGV[4]  batch id
-- ARGV[5]  shard settings: ttl|dead-letter ttl|wake channel|publish command|shard
-- Returns  1 when acknowledged, 0 when the caller no longer holds the batch
--          (its lease ran out or another claimer holds it now).

local now = now_ms(ARGV[1])
local conv = ARGV[2]
local keys = {m = KEYS[1], b = KEYS[2]}
local ctx = shard_ctx({KEYS[3], KEYS[4], KEYS[5]}, ARGV[5])

local head = holds(ctx, conv, keys, ARGV[3], ARGV[4], now)
if not head then
  return 0
end
local next_raw = remove_head(ctx, conv, keys, head)
redis.call('HINCRBY', ctx.stats, 'acked', 1)
redis.call('HINCRBY', ctx.stats, 'acked_messages', head.n)
schedule_head(ctx, conv, next_raw, now)
if next_raw then  -- the lists are gone otherwise: touch them no more
  touch(keys, ctx.ttl)
end
touch_shard(ctx)
return 1
