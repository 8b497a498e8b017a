-- peek: how many batches of one shard a claim could take now. Reads only.
-- claim() on a namespace of many shards peeks at all of them in one round
-- trip, then claims only where there is work, instead of visiting each shard.
--
-- KEYS[1]  the shard's ready index      KEYS[2]  the shard's lease index
-- ARGV[1]  now in ms, or '' for the server clock
-- Returns  {ready batches due now, leases run out by now}

local now = now_ms(ARGV[1])
return {
  redis.call('ZCOUNT', KEYS[1], '-inf', now),
  redis.call('ZCOUNT', KEYS[2], '-inf', now),
}
