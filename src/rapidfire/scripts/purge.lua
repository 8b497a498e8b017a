-- purge: delete one dead letter for good.
--
-- KEYS[1]  the shard's dead-letter index
-- KEYS[2]  dl: the dead letter's hash   KEYS[3]  dm: its message list
-- ARGV[1]  dead letter (batch) id
-- Returns  1 when it existed, else 0.

local existed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
return existed
