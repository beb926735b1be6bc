-- list: one page of the jobs of one state set.
-- KEYS[1]: the queue's base key
-- ARGV[1]: the set's suffix, e.g. ':dead'
-- ARGV[2]: first index of the page
-- ARGV[3]: last index of the page
-- ARGV[4]: '1' for newest first, '0' for oldest first
-- Returns {total, {field, value, ...}, ...}; an active job's hash gets its lease token
-- as the field 'lease'.
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
