-- enqueue: create jobs of one type, unless a unique or idempotency key names a job
-- that is already there.
-- KEYS[1]: the queue's base key
-- ARGV[1]: idempotency TTL in ms
-- ARGV[2]: ms of waiting one priority level is worth (aging)
-- ARGV[3]: the job type
-- ARGV[4]: the job options, JSON (installsure.jobs.wire.JobOptions)
-- ARGV[5]: the payload schema version
-- ARGV[6]: JSON array of jobs [id, data, priority, delay ms, unique key, idempotency key]
-- Returns {index, existing id, ...} for the jobs answered by an existing job; every
-- other job was created under the id it was given.
local idem_ttl = tonumber(ARGV[1])
local aging = tonumber(ARGV[2])
local jtype, opts, version = ARGV[3], ARGV[4], ARGV[5]
local jobs = cjson.decode(ARGV[6])
local now = now_ms()
local dups = {}
local ranks = {}
for i, job in ipairs(jobs) do
  local id, data, prio, delay, uniq, idem = job[1], job[2], job[3], job[4], job[5], job[6]
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
    local fields = {'type', jtype, 'data', data, 'opts', opts, 'v', version,
      'priority', prio, 'created', now, 'attempts', 0, 'stalls', 0}
    if uniq ~= '' then
      fields[#fields + 1] = 'uniq'
      fields[#fields + 1] = uniq
      redis.call('HSET', b .. ':unique', uniq, id)
    end
    if idem ~= '' then
      fields[#fields + 1] = 'idem'
      fields[#fields + 1] = idem
      redis.call('SET', b .. ':idem:' .. idem, id, 'PX', idem_ttl)
    end
    local state, ready = 'waiting', now
    if delay > 0 then
      state, ready = 'delayed', now + delay
      redis.call('ZADD', b .. ':delayed', ready, id)
    else
      -- The index keeps jobs of one call in order (ties in a zset sort by member).
      ranks[#ranks + 1] = now + prio * aging + i * 0.001
      ranks[#ranks + 1] = id
    end
    fields[#fields + 1] = 'state'
    fields[#fields + 1] = state
    fields[#fields + 1] = 'ready'
    fields[#fields + 1] = ready
    redis.call('HSET', b .. ':job:' .. id, unpack(fields))
  end
end
if #ranks > 0 then
  redis.call('ZADD', b .. ':wait', unpack(ranks))
  wake(b)
end
return dups
