-- counts: how many jobs each state holds, and who works on the queue.
-- KEYS[1]: the queue's base key
-- ARGV[1]: liveness TTL in ms (workers seen within it count as live)
-- Returns {waiting, active, completed, failed, delayed, dead, paused flag, workers,
--          completed this minute, completed last minute}.
local now = now_ms()
local minute = math.floor(now / 60000)
return {
  redis.call('ZCARD', b .. ':wait'), redis.call('ZCARD', b .. ':active'),
  redis.call('ZCARD', b .. ':completed'), redis.call('ZCARD', b .. ':retry'),
  redis.call('ZCARD', b .. ':delayed'), redis.call('ZCARD', b .. ':dead'),
  redis.call('HEXISTS', b .. ':meta', 'paused'),
  redis.call('ZCOUNT', b .. ':workers', now - tonumber(ARGV[1]), '+inf'),
  tonumber(redis.call('HGET', b .. ':tp', minute) or '0'),
  tonumber(redis.call('HGET', b .. ':tp', minute - 1) or '0'),
}
