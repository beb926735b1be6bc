-- complete: record the results of jobs this worker finished, fenced by their leases.
-- Idempotent per lease token, so a report whose reply was lost (Redis restarted or the
-- connection dropped after it ran) can be sent again: see `reported` in common.lua.
-- KEYS[1]: the queue's base key
-- ARGV[1]: how many completed jobs to keep
-- ARGV[2]: how long to keep completed jobs, ms (0 = no age limit)
-- ARGV[3]: the reporting flusher's id (one per worker and queue)
-- ARGV[4]: this report's number, unique for the flusher
-- ARGV[5]: how long Redis remembers this report's answer, ms
-- ARGV[6]...: four arguments per job: id, lease token, result JSON, unique key or ''
--          (plain arguments: nothing to decode here)
-- Returns the ids whose lease was no longer held (their result is refused).
local answer = earlier_answer(b, ARGV[3], ARGV[4])
if answer then return answer end
local now = now_ms()
local ids = {}
for k = 6, #ARGV, 4 do ids[#ids + 1] = ARGV[k] end
local held = leases_of(b, ids)
local refused, done, finished = {}, {}, {}
local now_text = tostring(now)  -- once: number-to-text conversions are dear in Lua
for i, id in ipairs(ids) do
  local k = 2 + i * 4
  local token = ARGV[k + 1]
  if held[i] and held[i] == token then
    redis.call('HSET', b .. ':job:' .. id, 'state', 'completed', 'finished', now_text,
      'result', ARGV[k + 2], 'token', token)
    release_unique(b, id, ARGV[k + 3])
    done[#done + 1] = id
    finished[#finished + 1] = now_text
    finished[#finished + 1] = id
  elseif not reported(b, id, token) then
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
remember_answer(b, ARGV[3], ARGV[4], ARGV[5], refused)
return refused
