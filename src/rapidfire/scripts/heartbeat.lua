-- heartbeat: record that a process of the namespace is alive, and tell it
-- when a worker was last seen.
--
-- KEYS[1]  the namespace's peer records (HASH: peer id -> JSON record)
-- KEYS[2]  the namespace's peer index (ZSET: peer id -> last seen, ms)
-- ARGV[1]  now in ms, or '' for the server clock
-- ARGV[2]  peer id           ARGV[3]  its record (JSON, without "seen")
-- ARGV[4]  role ('worker' or 'producer')
-- ARGV[5]  forget peers not seen for this long (ms); also the keys' ttl
-- Returns  {now, last time any worker was seen (ms) or -1}

local now = now_ms(ARGV[1])
local forget = tonumber(ARGV[5])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], now, ARGV[4] .. '|' .. ARGV[2])

local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - forget, 'LIMIT', 0, 100)
for _, member in ipairs(stale) do
  local id = string.match(member, '^[^|]*|(.*)$')
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], member)
end

local last = -1
local workers = redis.call('ZREVRANGEBYSCORE', KEYS[2], '+inf', '-inf', 'WITHSCORES')
for i = 1, #workers, 2 do
  if string.sub(workers[i], 1, 7) == 'worker|' then
    last = tonumber(workers[i + 1])
    break
  end
end
redis.call('PEXPIRE', KEYS[1], forget)
redis.call('PEXPIRE', KEYS[2], forget)
return {now, last}
