-- purge: delete up to 1000 jobs of one state set.
-- KEYS[1]: the queue's base key
-- ARGV[1]: the set's suffix, e.g. ':completed'
-- Returns how many it deleted.
local z = b .. ARGV[1]
local ids = redis.call('ZRANGE', z, 0, 999)
for _, id in ipairs(ids) do
  local jk = b .. ':job:' .. id
  release_unique(b, id, redis.call('HGET', jk, 'uniq'))
  redis.call('DEL', jk)
end
if #ids > 0 then redis.call('ZREM', z, unpack(ids)) end
return #ids
