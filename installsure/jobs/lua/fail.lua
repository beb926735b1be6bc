-- fail: record failed attempts of jobs this worker ran, fenced by their leases.
-- 'retry' spends an attempt and waits in b:retry; 'later' (RetryLater) waits in
-- b:delayed without spending one; 'dead' spends it and moves the job to b:dead.
-- Idempotent per lease token, like complete.lua.
-- KEYS[1]: the queue's base key
-- ARGV[1]: how many dead jobs to keep
-- ARGV[2]: how long to keep dead jobs, ms (0 = no age limit)
-- ARGV[3]: JSON array of [id, lease token, action ('retry' | 'later' | 'dead'),
--          delay ms, error object]
-- ARGV[4]: the reporting flusher's id (one per worker and queue)
-- ARGV[5]: this report's number, unique for the flusher
-- ARGV[6]: how long Redis remembers this report's answer, ms
-- Returns the ids whose lease was no longer held.
local answer = earlier_answer(b, ARGV[4], ARGV[5])
if answer then return answer end
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
  elseif not reported(b, id, job[2]) then
    refused[#refused + 1] = id
  end
end
if died then trim(b, ':dead', tonumber(ARGV[1]), tonumber(ARGV[2]), now) end
remember_answer(b, ARGV[4], ARGV[5], ARGV[6], refused)
return refused
