-- sweep: return the jobs of workers that stopped renewing their leases, apply
-- retention, forget silent workers and promote due jobs. Safe on every node at once:
-- each expired lease is handled by exactly one call. Retention runs here too, so
-- finished jobs age out of a queue that has gone quiet.
-- KEYS[1]: the queue's base key
-- ARGV[1]: stalls after which a job is dead instead of waiting again
-- ARGV[2]: ms of waiting one priority level is worth (aging)
-- ARGV[3]: liveness TTL in ms
-- ARGV[4]: how many dead jobs to keep
-- ARGV[5]: how long to keep dead jobs, ms (0 = no age limit)
-- ARGV[6]: how many completed jobs to keep
-- ARGV[7]: how long to keep completed jobs, ms (0 = no age limit)
-- ARGV[8]: how long after an outage no stall is counted, ms
-- ARGV[9]: '1' when the sweeping worker could not reach Redis since it last said so
-- Returns {stalled ids (back to waiting), ids moved to dead, delayed jobs promoted,
--          ms until stalls are counted again (0: they are)}.
--
-- A lease lapses on Redis' clock, which runs on while the workers cannot reach it. So
-- a lapsed lease is taken as a dead worker only once every live worker has had the
-- time to renew: no stall is counted until ARGV[8] ms after the last outage seen. An
-- outage is seen when this Redis is not the one that answered before (a restart or a
-- failover gives another run_id), or when a worker says it could not reach Redis
-- (here, or in the heartbeat script: see hold_stalls in common.lua).
local max_stalls = tonumber(ARGV[1])
local aging = tonumber(ARGV[2])
local now = now_ms()
local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or ''
local hold = tonumber(redis.call('HGET', b .. ':meta', 'hold') or '0')
local seen = redis.call('HGET', b .. ':meta', 'run_id')
if ARGV[9] == '1' or (seen and seen ~= run_id) then
  hold = hold_stalls(b, now, tonumber(ARGV[8]))
end
-- (A queue's first sweep has no run_id to compare: nothing of it is held yet.)
if seen ~= run_id then redis.call('HSET', b .. ':meta', 'run_id', run_id) end
local expired = {}
if now >= hold then
  expired = redis.call('ZRANGEBYSCORE', b .. ':active', '-inf', now, 'LIMIT', 0, 1000)
end
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
        'errors', cjson.encode(errors), 'error', msg, 'stalled_token', held[i] or '')
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
return {stalled, dead, promoted, math.max(0, hold - now)}
