-- owns: does the caller still hold the batch? Reads only.
--
-- KEYS[1]  b: batch records    KEYS[2]  the shard's lease index
-- ARGV[1]  now in ms, or '' for the server clock
-- ARGV[2]  conversation id     ARGV[3]  fencing token      ARGV[4]  batch id
-- Returns  the lease expiry (ms) when the caller holds the batch, else 0.

local now = now_ms(ARGV[1])
local conv = ARGV[2]
local keys = {b = KEYS[1]}
local ctx = {leased = KEYS[2]}

if not holds(ctx, conv, keys, ARGV[3], ARGV[4], now) then
  return 0
end
return tonumber(redis.call('ZSCORE', ctx.leased, conv))
