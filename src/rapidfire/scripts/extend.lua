-- extend: the holder of a batch pushes its lease expiry to now + ARGV[5].
--
-- KEYS[1]  m: message list     KEYS[2]  b: batch records
-- KEYS[3]  the shard's ready index      KEYS[4]  the shard's lease index
-- KEYS[5]  the shard's stats hash
-- ARGV[1]  now in ms, or '' for the server clock
-- ARGV[2]  conversation id     ARGV[3]  fencing token      ARGV[4]  batch id
-- ARGV[5]  lease (ms) from now
-- ARGV[6]  shard settings: ttl|dead-letter ttl|wake channel|publish command|shard
-- Returns  the new lease expiry (ms), or 0 when the caller no longer holds it.

local now = now_ms(ARGV[1])
local conv = ARGV[2]
local keys = {m = KEYS[1], b = KEYS[2]}
local ctx = shard_ctx({KEYS[3], KEYS[4], KEYS[5]}, ARGV[6])

if not holds(ctx, conv, keys, ARGV[3], ARGV[4], now) then
  return 0
end
local until_ms = now + tonumber(ARGV[5])
zadd(ctx.leased, until_ms, conv)
touch(keys, ctx.ttl)
touch_shard(ctx)
return until_ms
