-- push: append messages to a conversation's open batch, in one atomic step.
--
-- KEYS[1]  m: the conversation's message list
-- KEYS[2]  b: the conversation's batch records
-- KEYS[3]  c: the conversation's state hash (token, error, n)
-- KEYS[4]  d: the conversation's dedupe set (dedupe id -> push time)
-- KEYS[5]  the shard's ready index (conversation -> ready time)
-- KEYS[6]  the shard's lease index (conversation -> lease expiry)
-- KEYS[7]  the shard's stats hash
-- ARGV[1]  now in ms, or '' for the server clock
-- ARGV[2]  conversation id
-- ARGV[3]  debounce (ms)     ARGV[4]  max wait (ms)     ARGV[5]  max size
-- ARGV[6]  ttl (ms)          ARGV[7]  dedupe window (ms)
-- ARGV[8]  wake channel      ARGV[9]  publish command   ARGV[10] shard index
-- ARGV[11..] pairs: dedupe id ('' for none), encoded message
-- Returns  {now, {duplicate 0/1, batch id, batch size, ready ms}, ...} with one
--          entry per message, in order ('' and -1 for a duplicate that found no
--          open batch).

local now = now_ms(ARGV[1])
local conv = ARGV[2]
local debounce, max_wait, max_size = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local dedupe_window = tonumber(ARGV[7])
local keys = {m = KEYS[1], b = KEYS[2], c = KEYS[3]}
local ctx = {
  ready = KEYS[5], leased = KEYS[6], stats = KEYS[7], ttl = tonumber(ARGV[6]),
  channel = ARGV[8], publish = ARGV[9], shard = ARGV[10],
}

local raw = redis.call('LINDEX', keys.b, -1)
local tail = raw and parse(raw) or nil
local results = {now}
local pushed, duplicates, deduped = 0, 0, false

redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - dedupe_window)

for i = 11, #ARGV, 2 do
  local dedupe_id, message = ARGV[i], ARGV[i + 1]
  local duplicate = false
  if dedupe_id ~= '' then
    deduped = true
    if redis.call('ZSCORE', KEYS[4], dedupe_id) then
      duplicate = true
    else
      redis.call('ZADD', KEYS[4], now, dedupe_id)
    end
  end

  if duplicate then
    duplicates = duplicates + 1
    if tail and tail.open then
      table.insert(results, {1, tail.id, tail.n, tail.ready})
    else
      table.insert(results, {1, '', 0, -1})
    end
  else
    if tail and tail.open then
      tail.n = tail.n + 1
      tail.last = now
    else
      local seq = redis.call('HINCRBY', ctx.stats, 'batches', 1)
      tail = {
        id = fmt(now) .. '-' .. ctx.shard .. '-' .. seq, n = 1, first = now,
        last = now, attempt = 0, open = true,
      }
      redis.call('RPUSH', keys.b, '')
    end
    if tail.n >= max_size then
      tail.open, tail.why, tail.ready = false, 'max_size', now
    elseif tail.first + max_wait <= now + debounce then
      tail.why, tail.ready = 'max_wait', tail.first + max_wait
    else
      tail.why, tail.ready = 'quiet', now + debounce
    end
    redis.call('LSET', keys.b, -1, encode(tail))
    redis.call('RPUSH', keys.m, message)
    pushed = pushed + 1
    table.insert(results, {0, tail.id, tail.n, tail.ready})
  end
end

if pushed > 0 then
  redis.call('HINCRBY', keys.c, 'n', pushed)
  redis.call('HINCRBY', ctx.stats, 'pushed', pushed)
  redis.call('HINCRBY', ctx.stats, 'messages', pushed)
  if not redis.call('ZSCORE', ctx.leased, conv) then
    local head = parse(redis.call('LINDEX', keys.b, 0))
    redis.call('ZADD', ctx.ready, head.ready, conv)
    wake_if_earliest(ctx, head.ready, now)
  end
  touch(keys, ctx.ttl)
end
if duplicates > 0 then
  redis.call('HINCRBY', ctx.stats, 'duplicates', duplicates)
end
if deduped then
  redis.call('PEXPIRE', KEYS[4], dedupe_window)
end
touch_shard(ctx)
return results
