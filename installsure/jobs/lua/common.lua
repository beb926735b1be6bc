-- common: helpers every job script starts with; the loader
-- (installsure.jobs.scripts) puts this file in front of each script.
-- KEYS[1]: the queue's base key; every other key of the queue is derived from it.
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
-- Idempotent reports (complete, fail). A report whose reply was lost is sent again,
-- unchanged, before anything else of its flusher; two records tell that it was applied:
-- * b:ack:<flusher> holds the number and answer of the flusher's last report (a
--   flusher has one report in flight at a time, so one key per flusher is enough, and
--   it expires after the outage grace);
-- * the job hash keeps the token whose outcome it took, for as long as the job is kept.
local function earlier_answer(b, flusher, number)
  local last = redis.call('GET', b .. ':ack:' .. flusher)
  if not last then return false end
  local sep = string.find(last, '\n', 1, true)
  if string.sub(last, 1, sep - 1) ~= number then return false end
  return cjson.decode(string.sub(last, sep + 1))
end
local function remember_answer(b, flusher, number, ttl, refused)
  local text = '[]'
  if #refused > 0 then text = cjson.encode(refused) end
  redis.call('SET', b .. ':ack:' .. flusher, number .. '\n' .. text, 'PX', ttl)
end
-- The outcome reported under `token` was applied already (the token is no longer the
-- job's lease because that outcome ended it).
local function reported(b, id, token)
  return redis.call('HGET', b .. ':job:' .. id, 'token') == token
end
-- After an outage: count no stall until `ms` from now (or later, if already so).
-- Returns when stalls are counted again.
local function hold_stalls(b, now, ms)
  local hold = math.max(tonumber(redis.call('HGET', b .. ':meta', 'hold') or '0'), now + ms)
  redis.call('HSET', b .. ':meta', 'hold', hold)
  return hold
end
