-- remove: delete a job that is not running (its worker holds an active one: retry
-- once it finished or stalled).
-- KEYS[1]: the queue's base key
-- ARGV[1]: the job id
-- Returns 'ok', 'missing' or 'active'.
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
