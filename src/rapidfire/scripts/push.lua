-- push: append messages to conversations' open batches. Each conversation's
-- messages are stored in one atomic step; a call may carry several
-- conversations of one shard (push_many), which share the shard's keys.
--
-- KEYS[1]  the shard's ready index (conversation -> ready time)
-- KEYS[2]  the shard's lease index (conversation -> lease expiry)
-- KEYS[3]  the shard's stats hash
-- then, per conversation in the order of ARGV, two or three keys:
--          m: the conversation's message list
--          b: the conversation's batch records
--          d: its dedupe set (dedupe id -> push time), only when one of its
--             messages in this call carries a dedupe id. A key that is not
--             needed is not declared: on a cluster, a declared key that does
--             not exist makes Redis refuse the call while the slot migrates.
-- ARGV[1]  now in ms, or '' for the server clock
-- ARGV[2]  shard settings: ttl|dead-letter ttl|wake channel|publish command|shard
-- ARGV[3]  policy: debounce|max_wait|max_size|dedupe_window (ms, count, ms)
-- ARGV[4..] per conversation: its id, the number of messages n, then n pairs
--          of dedupe id ('' for none) and encoded message
-- Returns  one string, cheap to send and parse: now, then per message in ARGV
--          order 'duplicate(0/1),batch id,batch size,ready ms', ';'-separated
--          (for a duplicate that found no open batch: '1,,0,-1').

local now = now_ms(ARGV[1])
local ctx = shard_ctx({KEYS[1], KEYS[2], KEYS[3]}, ARGV[2])
local debounce, max_wait, max_size, dedupe_window = string.match(ARGV[3],
  '^(%d+)|(%d+)|(%d+)|(%d+)$')
debounce, max_wait = tonumber(debounce), tonumber(max_wait)
max_size, dedupe_window = tonumber(max_size), tonumber(dedupe_window)
local results = {now}
local total_pushed, total_duplicates = 0, 0

-- Push ARGV[first .. first + 2n - 1] into conversation `conv`.
local function push_conversation(conv, keys, first, n)
  -- The last two records: the tail, and whether it is also the head.
  local head_ready = nil
  local last = redis.call('LRANGE', keys.b, -2, -1)
  -- Records whose messages expired (workers were away for twice the ttl;
  -- records outlive messages so that the loss can be counted): count them
  -- expired and start afresh, so that no new message joins an old batch.
  local stale = 0
  if #last > 0 and redis.call('EXISTS', keys.m) == 0 then
    local lost = 0
    for _, raw in ipairs(redis.call('LRANGE', keys.b, 0, -1)) do
      stale = stale + 1
      lost = lost + parse(raw).n
    end
    redis.call('HINCRBY', ctx.stats, 'expired_batches', stale)
    redis.call('HINCRBY', ctx.stats, 'expired_messages', lost)
    redis.call('ZREM', ctx.leased, conv)
    last = {}
  end
  local tail = last[#last] and parse(last[#last]) or nil
  local tail_is_head = #last == 1
  local had_batches = tail ~= nil
  local pushed, duplicates, remembered = 0, 0, false
  local head_pushed = false  -- did a message join the head batch (or open it)?

  for i = first, first + 2 * n - 1, 2 do
    local dedupe_id, message = ARGV[i], ARGV[i + 1]
    local duplicate = false
    if dedupe_id ~= '' then
      -- Seen within the window? An older sighting has expired: push again.
      local seen = redis.call('ZSCORE', keys.d, dedupe_id)
      duplicate = seen and tonumber(seen) > now - dedupe_window
      if not duplicate then
        redis.call('ZADD', keys.d, now, dedupe_id)
        remembered = true
      end
    end

    if duplicate then
      duplicates = duplicates + 1
      if tail and tail.open then
        table.insert(results, '1,' .. tail.id .. ',' .. tail.n .. ',' .. tail.ready)
      else
        table.insert(results, '1,,0,-1')
      end
    else
      local new = not (tail and tail.open)
      if new then
        local seq = redis.call('HINCRBY', ctx.stats, 'batches', 1)
        tail_is_head = tail == nil
        tail = {
          id = fmt(now) .. '-' .. ctx.shard .. '-' .. seq, n = 1, first = now,
          last = now, attempt = 0, open = true,
        }
      else
        tail.n = tail.n + 1
        tail.last = now
      end
      if tail.n >= max_size then
        tail.open, tail.why, tail.ready = false, 'max_size', now
      elseif tail.first + max_wait <= now + debounce then
        tail.why, tail.ready = 'max_wait', tail.first + max_wait
      else
        tail.why, tail.ready = 'quiet', now + debounce
      end
      if new then
        redis.call('RPUSH', keys.b, encode(tail))
      else
        redis.call('LSET', keys.b, -1, encode(tail))
      end
      redis.call('RPUSH', keys.m, message)
      pushed = pushed + 1
      if tail_is_head then
        head_pushed = true
        head_ready = tail.ready
      end
      table.insert(results, '0,' .. tail.id .. ',' .. tail.n .. ',' .. tail.ready)
    end
  end

  if stale > 0 then
    -- Drop the expired records: after the new ones when there are some (the
    -- list never empties), or with the list when every message was a duplicate.
    if pushed > 0 then
      redis.call('LTRIM', keys.b, stale, -1)
    else
      redis.call('DEL', keys.b)
      redis.call('ZREM', ctx.ready, conv)
    end
  end
  if pushed > 0 then
    -- Only a push into the head batch moves the conversation's ready time. An
    -- open head is never leased, so the conversation is in the ready index (or
    -- enters it now, when it had no batch).
    if head_pushed then
      zadd(ctx.ready, head_ready, conv)
      -- Pushes only move an open batch's deadline later; a conversation's first
      -- batch, or a full one, may bring the shard's earliest deadline closer.
      if not had_batches or head_ready <= now then
        wake_if_earliest(ctx, head_ready, now)
      end
    end
    touch(keys, ctx.ttl)
  end
  if remembered then
    -- Forget ids older than the window. Only after adding one: the set then
    -- cannot empty, and a key emptied mid-script must not be touched again.
    redis.call('ZREMRANGEBYSCORE', keys.d, '-inf', now - dedupe_window)
    redis.call('PEXPIRE', keys.d, dedupe_window)
  end
  total_pushed = total_pushed + pushed
  total_duplicates = total_duplicates + duplicates
end

local arg, key = 4, 4
while arg <= #ARGV do
  local conv, n = ARGV[arg], tonumber(ARGV[arg + 1])
  local keys = {m = KEYS[key], b = KEYS[key + 1]}
  key = key + 2
  for i = arg + 2, arg + 2 * n, 2 do
    if ARGV[i] ~= '' then
      keys.d = KEYS[key]
      key = key + 1
      break
    end
  end
  push_conversation(conv, keys, arg + 2, n)
  arg = arg + 2 + 2 * n
end

if total_pushed > 0 then
  redis.call('HINCRBY', ctx.stats, 'pushed', total_pushed)
end
if total_duplicates > 0 then
  redis.call('HINCRBY', ctx.stats, 'duplicates', total_duplicates)
end
touch_shard(ctx)
return table.concat(results, ';')
