-- heartbeat: renew a worker's liveness key and the leases it still holds.
-- KEYS[1]: the queue's base key
-- ARGV[1]: the worker id
-- ARGV[2]: lease length in ms
-- ARGV[3]: liveness TTL in ms
-- ARGV[4]: JSON array [id, lease token, id, token, ...] of the jobs it holds
-- ARGV[5]: '1' when the worker could not reach Redis since it last said so: no stall
--          is counted for ARGV[6] ms (see sweep.lua), so every other live worker
--          back from the same outage has the time to renew its leases too
-- ARGV[6]: how long after an outage no stall is counted, ms
-- Returns the tokens of the leases it lost (a job may be held twice, under an old
-- token whose outcome is being reported and under a new one).
local now = now_ms()
local lease = tonumber(ARGV[2])
if ARGV[5] == '1' then hold_stalls(b, now, tonumber(ARGV[6])) end
redis.call('SET', b .. ':alive:' .. ARGV[1], now, 'PX', ARGV[3])
redis.call('ZADD', b .. ':workers', now, ARGV[1])
local pairs_ = cjson.decode(ARGV[4])
local ids = {}
for n = 1, #pairs_, 2 do ids[#ids + 1] = pairs_[n] end
local held = leases_of(b, ids)
local lost, renewed = {}, {}
for i, id in ipairs(ids) do
  if held[i] and held[i] == pairs_[2 * i] then
    renewed[#renewed + 1] = now + lease
    renewed[#renewed + 1] = id
  else
    lost[#lost + 1] = pairs_[2 * i]
  end
end
if #renewed > 0 then redis.call('ZADD', b .. ':active', 'XX', unpack(renewed)) end
return lost
