"""The Lua scripts: every state change of a job is one of these, run atomically.

Every script gets ``KEYS[1]``, the queue's base key ``{<prefix>q:<queue>}``; all other
keys are derived from it and share its hash tag, so a queue lives in one Redis Cluster
slot. Times come from Redis' own clock (TIME), so nodes with skewed clocks agree on
leases and due times. Layout of the keys below ``b = KEYS[1]``:

    b:job:<id>  hash: type data opts v priority state created ready attempts stalls
                token finished progress result error errors uniq idem
    b:leases    hash id → lease token of every active job (the fence). A token reads
                "<worker>|<claimed at ms>|<random>". The job hash is not written when a
                job is claimed (its state field still says waiting): readers take
                "active" from here, which saves a write per job on the hottest path.
    b:wait      zset id → rank (ready time in ms + priority * aging; lowest first)
    b:active    zset id → lease deadline (ms)
    b:delayed   zset id → due time (ms)           enqueued with a delay / RetryLater
    b:retry     zset id → due time (ms)           failed, waiting for the next attempt
    b:completed zset id → finish time (ms)        bounded by retention
    b:dead      zset id → finish time (ms)        bounded by retention
    b:meta      hash: paused
    b:unique    hash unique key → id of the pending job holding it
    b:idem:<k>  string → job id, expires after the idempotency TTL
    b:marker    list; a worker blocks on it (BLPOP) while the queue is empty
    b:limiter   string counter of the rate-limit window (expires with it)
    b:workers   zset worker id → last heartbeat (ms)
    b:alive:<w> string with a short TTL: the worker is alive
    b:tp        hash minute → jobs completed in that minute (throughput)
"""

from __future__ import annotations

_COMMON = r"""
local b = KEYS[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function wake(b)
  if redis.call('LLEN', b .. ':marker') == 0 then
    redis.call('RPUSH', b .. ':marker', '1')
  end
end
-- Lease tokens of `ids` (false where none), in one call.
local function leases_of(b, ids)
  if #ids == 0 then return {} end
  return redis.call('HMGET', b .. ':leases', unpack(ids))
end
local function release_unique(b, id, uniq)
  if uniq and uniq ~= '' and redis.call('HGET', b .. ':unique', uniq) == id then
    redis.call('HDEL', b .. ':unique', uniq)
  end
end
-- Bounded retention: at most `keep` entries and none older than `age` ms. Removes at
-- most 1000 per call so one script never blocks Redis for long; later calls catch up.
-- (Unique keys were released when the jobs finished, so only the hashes go.)
local function trim(b, set, keep, age, now)
  local z = b .. set
  local removed = 0
  local n = redis.call('ZCARD', z)
  if n > keep then
    local count = math.min(n - keep, 1000)
    local victims = redis.call('ZRANGE', z, 0, count - 1)
    for i, id in ipairs(victims) do victims[i] = b .. ':job:' .. id end
    redis.call('DEL', unpack(victims))
    redis.call('ZREMRANGEBYRANK', z, 0, count - 1)
    removed = count
  end
  if age > 0 and removed < 1000 then
    local old = redis.call('ZRANGEBYSCORE', z, '-inf', '(' .. (now - age),
      'LIMIT', 0, 1000 - removed)
    if #old > 0 then
      local keys = {}
      for i, id in ipairs(old) do keys[i] = b .. ':job:' .. id end
      redis.call('DEL', unpack(keys))
      redis.call('ZREM', z, unpack(old))
      removed = removed + #old
    end
  end
  return removed
end
-- Move due jobs from the delayed and retry sets to wait, ranked by their due time so a
-- job that has been due longer goes first.
local function promote(b, now, aging)
  local moved = 0
  for _, set in ipairs({':delayed', ':retry'}) do
    local due = redis.call('ZRANGEBYSCORE', b .. set, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
    for i = 1, #due, 2 do
      local id = due[i]
      local jk = b .. ':job:' .. id
      local prio = redis.call('HGET', jk, 'priority')
      if prio then
        redis.call('HSET', jk, 'state', 'waiting', 'ready', due[i + 1])
        redis.call('ZADD', b .. ':wait', tonumber(due[i + 1]) + tonumber(prio) * aging, id)
        moved = moved + 1
      end
      redis.call('ZREM', b .. set, id)
    end
  end
  if moved > 0 then wake(b) end
  return moved
end
local function next_due(b)
  local best = false
  for _, set in ipairs({':delayed', ':retry'}) do
    local first = redis.call('ZRANGE', b .. set, 0, 0, 'WITHSCORES')
    if first[2] and (not best or tonumber(first[2]) < best) then best = tonumber(first[2]) end
  end
  return best
end
"""

ENQUEUE = _COMMON + r"""
-- ARGV: idempotency ttl ms, aging ms per priority level, type, opts JSON, schema version,
--   JSON array of jobs [id, data, priority, delay ms, unique key, idempotency key].
-- Returns {index, existing id, ...} for the jobs answered by an existing job (unique or
-- idempotency key); every other job was created under the id it was given.
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
"""

CLAIM = _COMMON + r"""
-- ARGV: count, worker id, lease ms, token base, rate max (0 = none), rate period ms, aging
-- Returns one JSON text (one bulk reply parses far faster than many):
--   [status, now, next due or '', jobs...]; status 'ok' | 'paused' | 'limited'
--   ('limited': the second field is the ms until the window reopens).
-- Each job: [id, token, type, data, opts, v, attempts, stalls, created, ready, idem, uniq].
-- data and opts are JSON already and are spliced in as they are; ids, tokens and type
-- names never need escaping (uuids, hex, and names the registry checked).
local count = tonumber(ARGV[1])
local lease = tonumber(ARGV[3])
local rmax = tonumber(ARGV[5])
local now = now_ms()
promote(b, now, tonumber(ARGV[7]))
local due = next_due(b) or ''
if redis.call('HEXISTS', b .. ':meta', 'paused') == 1 then
  return cjson.encode({'paused', tostring(now), tostring(due)})
end
if rmax > 0 then
  local used = tonumber(redis.call('GET', b .. ':limiter') or '0')
  if used >= rmax then
    local ttl = redis.call('PTTL', b .. ':limiter')
    if ttl < 0 then ttl = 0 end
    return cjson.encode({'limited', tostring(ttl), tostring(due)})
  end
  count = math.min(count, rmax - used)
end
local popped = redis.call('ZPOPMIN', b .. ':wait', count)
local out = {}
local deadlines, leases = {}, {}
for i = 1, #popped, 2 do
  local id = popped[i]
  local jk = b .. ':job:' .. id
  local f = redis.call('HMGET', jk, 'type', 'data', 'opts', 'v', 'attempts', 'stalls',
    'created', 'ready', 'idem', 'uniq')
  if f[1] then
    local token = ARGV[2] .. '|' .. now .. '|' .. ARGV[4] .. i
    deadlines[#deadlines + 1] = now + lease
    deadlines[#deadlines + 1] = id
    leases[#leases + 1] = id
    leases[#leases + 1] = token
    out[#out + 1] = '["' .. id .. '","' .. token .. '","' .. f[1] .. '",' .. f[2] .. ','
      .. f[3] .. ',' .. (f[4] or '1') .. ',' .. (f[5] or '0') .. ',' .. (f[6] or '0') .. ','
      .. (f[7] or now) .. ',' .. (f[8] or now) .. ',' .. cjson.encode(f[9] or '') .. ','
      .. cjson.encode(f[10] or '') .. ']'
  end
end
local claimed = #leases / 2
if claimed > 0 then
  redis.call('ZADD', b .. ':active', unpack(deadlines))
  redis.call('HSET', b .. ':leases', unpack(leases))
  if rmax > 0 and redis.call('INCRBY', b .. ':limiter', claimed) == claimed then
    redis.call('PEXPIRE', b .. ':limiter', ARGV[6])
  end
end
-- Work left: wake one more idle worker (it wakes the next); none left: drop stale
-- markers so idle workers do not wake for nothing.
if redis.call('ZCARD', b .. ':wait') > 0 then wake(b) else redis.call('DEL', b .. ':marker') end
local head = cjson.encode({'ok', tostring(now), tostring(due)})
if #out == 0 then return head end
return string.sub(head, 1, -2) .. ',' .. table.concat(out, ',') .. ']'
"""

COMPLETE = _COMMON + r"""
-- ARGV: keep count, keep age ms, JSON array of [id, lease token, result JSON, unique key].
-- Returns the ids whose lease was no longer held (the result is refused).
local now = now_ms()
local jobs = cjson.decode(ARGV[3])
local ids = {}
for i, job in ipairs(jobs) do ids[i] = job[1] end
local held = leases_of(b, ids)
local refused, done, finished = {}, {}, {}
for i, job in ipairs(jobs) do
  local id = job[1]
  if held[i] and held[i] == job[2] then
    redis.call('HSET', b .. ':job:' .. id, 'state', 'completed', 'finished', now,
      'result', job[3], 'token', job[2])
    release_unique(b, id, job[4])
    done[#done + 1] = id
    finished[#finished + 1] = now
    finished[#finished + 1] = id
  else
    refused[#refused + 1] = id
  end
end
if #done > 0 then
  redis.call('HDEL', b .. ':leases', unpack(done))
  redis.call('ZREM', b .. ':active', unpack(done))
  redis.call('ZADD', b .. ':completed', unpack(finished))
  redis.call('HINCRBY', b .. ':tp', math.floor(now / 60000), #done)
end
trim(b, ':completed', tonumber(ARGV[1]), tonumber(ARGV[2]), now)
return refused
"""

FAIL = _COMMON + r"""
-- ARGV: keep dead count, keep dead age ms, JSON array of
--   [id, lease token, action ('retry' | 'later' | 'dead'), delay ms, error object]
-- 'retry' spends an attempt and waits in b:retry; 'later' (RetryLater) waits in
-- b:delayed without spending one; 'dead' spends it and moves the job to b:dead.
-- Returns the ids whose lease was no longer held.
local now = now_ms()
local jobs = cjson.decode(ARGV[3])
local ids = {}
for i, job in ipairs(jobs) do ids[i] = job[1] end
local held = leases_of(b, ids)
local refused = {}
local died = false
for i, job in ipairs(jobs) do
  local id, action, delay = job[1], job[3], job[4]
  local jk = b .. ':job:' .. id
  if held[i] and held[i] == job[2] then
    redis.call('HDEL', b .. ':leases', id)
    redis.call('ZREM', b .. ':active', id)
    redis.call('HSET', jk, 'token', job[2])
    if action == 'later' then
      redis.call('HSET', jk, 'state', 'delayed', 'ready', now + delay)
      redis.call('ZADD', b .. ':delayed', now + delay, id)
    else
      local f = redis.call('HMGET', jk, 'errors', 'uniq')
      local errors = {}
      if f[1] then errors = cjson.decode(f[1]) end
      local err = job[5]
      errors[#errors + 1] = err
      while #errors > 10 do table.remove(errors, 1) end
      redis.call('HINCRBY', jk, 'attempts', 1)
      redis.call('HSET', jk, 'errors', cjson.encode(errors), 'error', err['message'] or '')
      if action == 'retry' then
        redis.call('HSET', jk, 'state', 'failed', 'ready', now + delay)
        redis.call('ZADD', b .. ':retry', now + delay, id)
      else
        redis.call('HSET', jk, 'state', 'dead', 'finished', now)
        redis.call('ZADD', b .. ':dead', now, id)
        release_unique(b, id, f[2])
        died = true
      end
    end
  else
    refused[#refused + 1] = id
  end
end
if died then trim(b, ':dead', tonumber(ARGV[1]), tonumber(ARGV[2]), now) end
return refused
"""

HEARTBEAT = _COMMON + r"""
-- ARGV: worker id, lease ms, liveness ms, JSON array [id, lease token, id, token, ...].
-- Renews the worker's liveness and the leases it still holds; returns the ids it lost.
local now = now_ms()
local lease = tonumber(ARGV[2])
redis.call('SET', b .. ':alive:' .. ARGV[1], now, 'PX', ARGV[3])
redis.call('ZADD', b .. ':workers', now, ARGV[1])
local pairs_ = cjson.decode(ARGV[4])
local ids = {}
for n = 1, #pairs_, 2 do ids[#ids + 1] = pairs_[n] end
local held = leases_of(b, ids)
local lost, renewed = {}, {}
for i, id in ipairs(ids) do
  if held[i] and held[i] == pairs_[2 * i] then
    renewed[#renewed + 1] = now + lease
    renewed[#renewed + 1] = id
  else
    lost[#lost + 1] = id
  end
end
if #renewed > 0 then redis.call('ZADD', b .. ':active', 'XX', unpack(renewed)) end
return lost
"""

SWEEP = _COMMON + r"""
-- ARGV: max stalls, aging ms, liveness ms, keep dead count, keep dead age ms,
--   keep completed count, keep completed age ms.
-- Safe on every node at once: each expired lease is handled by exactly one call.
-- Also applies retention, so finished jobs age out of a queue that has gone quiet.
-- Returns {stalled ids (back to waiting), ids moved to dead, delayed jobs promoted}.
local max_stalls = tonumber(ARGV[1])
local aging = tonumber(ARGV[2])
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', b .. ':active', '-inf', now, 'LIMIT', 0, 1000)
local held = leases_of(b, expired)
local stalled, dead = {}, {}
for i, id in ipairs(expired) do
  local jk = b .. ':job:' .. id
  redis.call('ZREM', b .. ':active', id)
  redis.call('HDEL', b .. ':leases', id)
  local f = redis.call('HMGET', jk, 'priority', 'ready', 'errors', 'uniq')
  if f[1] then
    local stalls = redis.call('HINCRBY', jk, 'stalls', 1)
    local worker = string.match(held[i] or '', '^(.*)|[^|]*|[^|]*$') or ''
    if stalls > max_stalls then
      local errors = {}
      if f[3] then errors = cjson.decode(f[3]) end
      local msg = 'stalled ' .. stalls .. ' times (its worker stopped answering); '
        .. 'max_stalls is ' .. max_stalls
      errors[#errors + 1] = {message = msg, kind = 'stalled', worker = worker}
      while #errors > 10 do table.remove(errors, 1) end
      redis.call('HSET', jk, 'state', 'dead', 'finished', now,
        'errors', cjson.encode(errors), 'error', msg, 'token', held[i] or '')
      redis.call('ZADD', b .. ':dead', now, id)
      release_unique(b, id, f[4])
      dead[#dead + 1] = id
    else
      redis.call('HSET', jk, 'state', 'waiting')
      -- Its original rank: it has waited already, so it goes ahead of newer jobs.
      redis.call('ZADD', b .. ':wait', tonumber(f[2]) + tonumber(f[1]) * aging, id)
      stalled[#stalled + 1] = id
    end
  end
end
if #stalled > 0 then wake(b) end
trim(b, ':dead', tonumber(ARGV[4]), tonumber(ARGV[5]), now)
trim(b, ':completed', tonumber(ARGV[6]), tonumber(ARGV[7]), now)
redis.call('ZREMRANGEBYSCORE', b .. ':workers', '-inf', now - tonumber(ARGV[3]))
local promoted = promote(b, now, aging)
-- Throughput buckets older than an hour are no longer read.
local minute = math.floor(now / 60000)
for _, m in ipairs(redis.call('HKEYS', b .. ':tp')) do
  if tonumber(m) < minute - 60 then redis.call('HDEL', b .. ':tp', m) end
end
return {stalled, dead, promoted}
"""

RELEASE = _COMMON + r"""
-- ARGV: JSON array [id, lease token, id, token, ...]. Puts jobs back at the head of
-- wait without spending an attempt (drain on shutdown). Returns how many were released.
local released = 0
local head = redis.call('ZRANGE', b .. ':wait', 0, 0, 'WITHSCORES')
local rank = 0
if head[2] then rank = tonumber(head[2]) end
local pairs_ = cjson.decode(ARGV[1])
for n = 1, #pairs_, 2 do
  local id = pairs_[n]
  if redis.call('HGET', b .. ':leases', id) == pairs_[n + 1] then
    redis.call('HDEL', b .. ':leases', id)
    redis.call('HSET', b .. ':job:' .. id, 'state', 'waiting')
    redis.call('ZREM', b .. ':active', id)
    rank = rank - 1
    redis.call('ZADD', b .. ':wait', rank, id)
    released = released + 1
  end
end
if released > 0 then wake(b) end
return released
"""

PROGRESS = _COMMON + r"""
-- ARGV: id, lease token, progress JSON. Returns 1, or 0 when the lease is lost.
if redis.call('HGET', b .. ':leases', ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', b .. ':job:' .. ARGV[1], 'progress', ARGV[3])
return 1
"""

COUNTS = _COMMON + r"""
-- Returns {waiting, active, completed, failed, delayed, dead, paused flag, workers,
--          completed this minute, completed last minute}.
local now = now_ms()
local minute = math.floor(now / 60000)
return {
  redis.call('ZCARD', b .. ':wait'), redis.call('ZCARD', b .. ':active'),
  redis.call('ZCARD', b .. ':completed'), redis.call('ZCARD', b .. ':retry'),
  redis.call('ZCARD', b .. ':delayed'), redis.call('ZCARD', b .. ':dead'),
  redis.call('HEXISTS', b .. ':meta', 'paused'),
  redis.call('ZCOUNT', b .. ':workers', now - tonumber(ARGV[1]), '+inf'),
  tonumber(redis.call('HGET', b .. ':tp', minute) or '0'),
  tonumber(redis.call('HGET', b .. ':tp', minute - 1) or '0'),
}
"""

LIST = _COMMON + r"""
-- ARGV: set suffix, start, stop, newest first (1/0). Returns {total, {field, value...}...}
-- (an active job's hash gets its lease token as the field 'lease').
local z = b .. ARGV[1]
local ids
if ARGV[4] == '1' then
  ids = redis.call('ZREVRANGE', z, ARGV[2], ARGV[3])
else
  ids = redis.call('ZRANGE', z, ARGV[2], ARGV[3])
end
local out = {redis.call('ZCARD', z)}
for _, id in ipairs(ids) do
  local h = redis.call('HGETALL', b .. ':job:' .. id)
  h[#h + 1] = 'id'
  h[#h + 1] = id
  local lease = redis.call('HGET', b .. ':leases', id)
  if lease then
    h[#h + 1] = 'lease'
    h[#h + 1] = lease
  end
  out[#out + 1] = h
end
return out
"""

RETRY = _COMMON + r"""
-- ARGV: id, aging ms. Runs a dead, failed, delayed or completed job again at once,
-- with its attempts reset. Returns 'ok', 'missing' or the state that forbids it.
local id = ARGV[1]
local jk = b .. ':job:' .. id
local st = redis.call('HGET', jk, 'state')
if not st then return 'missing' end
if redis.call('HEXISTS', b .. ':leases', id) == 1 then return 'active' end
if st == 'waiting' then return st end
local now = now_ms()
for _, set in ipairs({':dead', ':retry', ':delayed', ':completed'}) do
  redis.call('ZREM', b .. set, id)
end
redis.call('HSET', jk, 'state', 'waiting', 'ready', now, 'attempts', 0, 'stalls', 0)
redis.call('HDEL', jk, 'finished', 'result')
local prio = tonumber(redis.call('HGET', jk, 'priority') or '0')
redis.call('ZADD', b .. ':wait', now + prio * tonumber(ARGV[2]), id)
local uniq = redis.call('HGET', jk, 'uniq')
if uniq and not redis.call('HGET', b .. ':unique', uniq) then
  redis.call('HSET', b .. ':unique', uniq, id)
end
wake(b)
return 'ok'
"""

RETRY_DEAD = _COMMON + r"""
-- ARGV: aging ms. Moves up to 1000 dead jobs back to wait; returns how many.
local now = now_ms()
local aging = tonumber(ARGV[1])
local ids = redis.call('ZRANGE', b .. ':dead', 0, 999)
for i, id in ipairs(ids) do
  local jk = b .. ':job:' .. id
  local prio = tonumber(redis.call('HGET', jk, 'priority') or '0')
  redis.call('HSET', jk, 'state', 'waiting', 'ready', now, 'attempts', 0, 'stalls', 0)
  redis.call('HDEL', jk, 'finished')
  redis.call('ZADD', b .. ':wait', now + prio * aging + i * 0.001, id)
  redis.call('ZREM', b .. ':dead', id)
end
if #ids > 0 then wake(b) end
return #ids
"""

REMOVE = _COMMON + r"""
-- ARGV: id. Returns 'ok', 'missing' or 'active' (an active job is not removed: its
-- worker holds it; retry once it finished or stalled).
local id = ARGV[1]
local jk = b .. ':job:' .. id
local f = redis.call('HMGET', jk, 'state', 'uniq')
if not f[1] then return 'missing' end
if redis.call('HEXISTS', b .. ':leases', id) == 1 then return 'active' end
for _, set in ipairs({':wait', ':delayed', ':retry', ':completed', ':dead'}) do
  redis.call('ZREM', b .. set, id)
end
release_unique(b, id, f[2])
redis.call('DEL', jk)
return 'ok'
"""

PURGE = _COMMON + r"""
-- ARGV: set suffix. Deletes up to 1000 jobs of that set; returns how many.
local z = b .. ARGV[1]
local ids = redis.call('ZRANGE', z, 0, 999)
for _, id in ipairs(ids) do
  local jk = b .. ':job:' .. id
  release_unique(b, id, redis.call('HGET', jk, 'uniq'))
  redis.call('DEL', jk)
end
if #ids > 0 then redis.call('ZREM', z, unpack(ids)) end
return #ids
"""

SCRIPTS: dict[str, str] = {
    "enqueue": ENQUEUE,
    "claim": CLAIM,
    "complete": COMPLETE,
    "fail": FAIL,
    "heartbeat": HEARTBEAT,
    "sweep": SWEEP,
    "release": RELEASE,
    "progress": PROGRESS,
    "counts": COUNTS,
    "list": LIST,
    "retry": RETRY,
    "retry_dead": RETRY_DEAD,
    "remove": REMOVE,
    "purge": PURGE,
}
