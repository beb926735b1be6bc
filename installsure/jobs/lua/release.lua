-- release: put jobs back at the head of wait without spending an attempt (a worker
-- draining on shutdown gives back what it could not finish).
-- KEYS[1]: the queue's base key
-- ARGV[1]: JSON array [id, lease token, id, token, ...]
-- Returns how many were released.
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
