-- peek: how many batches of one shard a claim could take now. Reads only.
-- claim() on a namespace of many shards peeks at all of them in one round
-- trip, then claims only where there is work, instead of visiting each shard.
--
-- KEYS[1]  the shard's ready index      KEYS[2]  the shard's lease index
-- ARGV[1]  now in ms, or '' for the server clock
-- Returns  {ready batches due now, leases run out by now}
-- Sent without _lib.lua (see _scripts.STANDALONE), so it reads the clock itself.

local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
return {
  redis.call('ZCOUNT', KEYS[1], '-inf', now),
  redis.call('ZCOUNT', KEYS[2], '-inf', now),
}
