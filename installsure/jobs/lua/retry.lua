-- retry: run a dead, failed, delayed or completed job again at once, with its
-- attempts reset.
-- KEYS[1]: the queue's base key
-- ARGV[1]: the job id
-- ARGV[2]: ms of waiting one priority level is worth (aging)
-- Returns 'ok', 'missing' or the state that forbids it.
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
