-- owns: does the caller still hold the batch? Reads only.
--
-- KEYS[1]  m: message list     KEYS[2]  b: batch records    KEYS[3]  c: state hash
-- KEYS[4]  the shard's ready index      KEYS[5]  the shard's lease index
-- ARGV[1]  now in ms, or '' for the server clock
-- ARGV[2]  conversation id     ARGV[3]  fencing token      ARGV[4]  batch id
-- Returns  the lease expiry (ms) when the caller holds the batch, else 0.

local now = now_ms(ARGV[1])
local conv = ARGV[2]
local keys = {m = KEYS[1], b = KEYS[2], c = KEYS[3]}
local ctx = {ready = KEYS[4], leased = KEYS[5]}

if not holds(ctx, conv, keys, ARGV[3], ARGV[4], now) then
  return 0
end
return tonumber(redis.call('ZSCORE', ctx.leased, conv))
