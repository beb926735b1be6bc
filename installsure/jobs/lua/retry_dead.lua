-- retry_dead: move up to 1000 dead jobs back to wait, with their attempts reset.
-- KEYS[1]: the queue's base key
-- ARGV[1]: ms of waiting one priority level is worth (aging)
-- Returns how many it moved.
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
