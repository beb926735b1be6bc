-- progress: store the progress a running job reported, fenced by its lease.
-- KEYS[1]: the queue's base key
-- ARGV[1]: the job id
-- ARGV[2]: its lease token
-- ARGV[3]: the progress, JSON
-- Returns 1, or 0 when the lease is lost.
if redis.call('HGET', b .. ':leases', ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', b .. ':job:' .. ARGV[1], 'progress', ARGV[3])
return 1
