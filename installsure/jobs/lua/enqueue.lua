-- enqueue: create jobs of one type, unless a unique or idempotency key names a job
-- that is already there.
-- KEYS[1]: the queue's base key
-- ARGV[1]: idempotency TTL in ms
-- ARGV[2]: ms of waiting one priority level is worth (aging)
-- ARGV[3]: the job type
-- ARGV[4]: the job options, JSON (installsure.jobs.wire.JobOptions)
-- ARGV[5]: the payload schema version
-- ARGV[6]: the priority of every job, when the jobs come as short rows; '' when they
--          come as full rows
-- ARGV[7]...: the jobs, as full rows of six arguments each: id, data (payload JSON),
--          priority, delay ms, unique key or '', idempotency key or ''; or, when none
--          has a delay or a key and all have the priority of ARGV[6], as short rows of
--          two: id, data. Plain arguments rather than one JSON array: nothing to
--          decode here, and the payloads travel unescaped.
-- Returns {index, existing id, ...} for the jobs answered by an existing job; every
-- other job was created under the id it was given.
local idem_ttl = tonumber(ARGV[1])
local aging = tonumber(ARGV[2])
local jtype, opts, version = ARGV[3], ARGV[4], ARGV[5]
local now = now_ms()
local now_text = tostring(now)
local dups = {}
local ranks = {}
-- Short rows (the usual single enqueue, and bulk enqueues without options): a third
-- of the arguments to send and to read.
local short = ARGV[6] ~= ''
local width, every_prio_text = 6, ARGV[6]
if short then width = 2 end
local every_prio = tonumber(every_prio_text)
local n = (#ARGV - 6) / width
for i = 1, n do
  local k = 6 + (i - 1) * width
  local id, data = ARGV[k + 1], ARGV[k + 2]
  local prio_text, prio, delay, uniq, idem = every_prio_text, every_prio, 0, '', ''
  if not short then
    prio_text, delay, uniq, idem = ARGV[k + 3], tonumber(ARGV[k + 4]), ARGV[k + 5],
      ARGV[k + 6]
    prio = tonumber(prio_text)
  end
  local existing = false
  if idem ~= '' then
    existing = redis.call('GET', b .. ':idem:' .. idem)
  end
  if not existing and uniq ~= '' then
    local holder = redis.call('HGET', b .. ':unique', uniq)
    if holder then
      local st = redis.call('HGET', b .. ':job:' .. holder, 'state')
      if st and st ~= 'completed' and st ~= 'dead' then existing = holder end
    end
  end
  if existing then
    dups[#dups + 1] = i
    dups[#dups + 1] = existing
  else
    local state, ready = 'waiting', now_text
    if delay > 0 then
      state, ready = 'delayed', tostring(now + delay)
      redis.call('ZADD', b .. ':delayed', ready, id)
    else
      -- The index keeps jobs of one call in order (ties in a zset sort by member):
      -- rank now + priority * aging + i / 1000, written as text by integer formatting
      -- when it can be (a fraction printed from a number costs far more).
      local whole = now + prio * aging + math.floor(i / 1000)
      if whole == math.floor(whole) then
        ranks[#ranks + 1] = string.format('%d.%03d', whole, i % 1000)
      else
        ranks[#ranks + 1] = now + prio * aging + i * 0.001
      end
      ranks[#ranks + 1] = id
    end
    -- attempts and stalls start at 0: absent fields read as 0 everywhere.
    local jk = b .. ':job:' .. id
    redis.call('HSET', jk, 'type', jtype, 'data', data, 'opts', opts, 'v', version,
      'priority', prio_text, 'created', now_text, 'state', state, 'ready', ready)
    if uniq ~= '' then
      redis.call('HSET', jk, 'uniq', uniq)
      redis.call('HSET', b .. ':unique', uniq, id)
    end
    if idem ~= '' then
      redis.call('HSET', jk, 'idem', idem)
      redis.call('SET', b .. ':idem:' .. idem, id, 'PX', idem_ttl)
    end
  end
end
if #ranks > 0 then
  redis.call('ZADD', b .. ':wait', unpack(ranks))
  wake(b)
end
return dups
