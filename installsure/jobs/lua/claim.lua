-- claim: lease up to `count` waiting jobs to one worker (promoting due delayed and
-- retried jobs first).
-- KEYS[1]: the queue's base key
-- ARGV[1]: how many jobs at most
-- ARGV[2]: the worker id (any text: it only goes into the lease token)
-- ARGV[3]: lease length in ms
-- ARGV[4]: the random base of this claim's lease tokens
-- ARGV[5]: the queue's rate limit, jobs per window (0 = none)
-- ARGV[6]: the rate-limit window in ms
-- ARGV[7]: ms of waiting one priority level is worth (aging)
-- ARGV[8]: '1' when this claim is sent again because its reply never came: the jobs
--          it leased then (tokens with the same random base) are answered again
--          instead of new ones, so a lost reply leaves no lease nobody knows of
-- Returns one JSON object (one bulk reply parses far faster than many), decoded by
-- installsure.jobs.wire.ClaimDecoder:
--   status      'ok' | 'paused' | 'limited'
--   now         Redis' time in ms
--   due         when the next delayed or retried job is due (ms), or null
--   reopens_in  ms until the rate-limit window reopens ('limited' only)
--   token       what every lease token of this claim starts with ('ok' only)
--   types       the job types of the claimed jobs, each once ('ok' only)
--   options     the stored job options (JSON text) of the claimed jobs, each once
--   jobs        the claimed jobs ('ok' only), each an array: id, the rest of its lease
--               token, index of its type in `types`, payload, index of its options in
--               `options` (null when it has none), version, attempts made, stalls,
--               created, ready (ms), idempotency key, unique key (null when none).
-- Arrays rather than objects, and what jobs share sent once: the reply is a third of
-- the size, and both this script and the worker spend less on it.
-- Every text is encoded by cjson. Only `data`, the payload JSON that enqueue stored,
-- goes in as it is: decoding and encoding every payload here would cost more than the
-- rest of the claim (and cjson would round its numbers).
local count = tonumber(ARGV[1])
local lease = tonumber(ARGV[3])
local rmax = tonumber(ARGV[5])
local now = now_ms()
local function text_or_null(value)
  if value then return cjson.encode(value) end
  return 'null'
end
-- Texts most jobs of a claim share (type, options) go into the reply once; a job
-- names them by index.
local shared = {types = {}, options = {}}
local index_of = {types = {}, options = {}}
local function share(kind, value)
  if not value then return 'null' end
  local index = index_of[kind][value]
  if not index then
    local list = shared[kind]
    list[#list + 1] = cjson.encode(value)
    index = tostring(#list - 1)
    index_of[kind][value] = index
  end
  return index
end
local fields = {'type', 'data', 'opts', 'v', 'attempts', 'stalls', 'created', 'ready',
  'idem', 'uniq'}
-- The numbers go in as the text stored (written by these scripts: integers), for
-- converting numbers to text and back is what a claim spent most of its time on.
local now_text = tostring(now)
local function encode(id, token_rest_json, f)
  return '[' .. cjson.encode(id) .. ',' .. token_rest_json .. ',' .. share('types', f[1])
    .. ',' .. f[2] .. ',' .. share('options', f[3]) .. ',' .. (f[4] or '1')
    .. ',' .. (f[5] or '0') .. ',' .. (f[6] or '0') .. ',' .. (f[7] or now_text)
    .. ',' .. (f[8] or now_text) .. ',' .. text_or_null(f[9]) .. ',' .. text_or_null(f[10])
    .. ']'
end
local function reply(out, due, token_json)
  local due_text = 'null'
  if due and due ~= cjson.null then due_text = tostring(due) end
  return '{"status":"ok","now":' .. now_text .. ',"due":' .. due_text .. ',"token":'
    .. token_json .. ',"types":[' .. table.concat(shared.types, ',') .. '],"options":['
    .. table.concat(shared.options, ',') .. '],"jobs":[' .. table.concat(out, ',') .. ']}'
end
if ARGV[8] == '1' then
  -- Rare (after a lost reply), so scanning every lease of the queue is fine.
  local mark = '|' .. ARGV[4]
  local all = redis.call('HGETALL', b .. ':leases')
  local out, renewed = {}, {}
  for i = 1, #all, 2 do
    if string.find(all[i + 1], mark, 1, true) then
      local f = redis.call('HMGET', b .. ':job:' .. all[i], unpack(fields))
      if f[1] then
        out[#out + 1] = encode(all[i], cjson.encode(all[i + 1]), f)  -- the whole token
        renewed[#renewed + 1] = now + lease
        renewed[#renewed + 1] = all[i]
      end
    end
  end
  if #out > 0 then
    redis.call('ZADD', b .. ':active', unpack(renewed))
    return reply(out, next_due(b), '""')
  end
end
promote(b, now, tonumber(ARGV[7]))
local due = next_due(b) or cjson.null
if redis.call('HEXISTS', b .. ':meta', 'paused') == 1 then
  return cjson.encode({status = 'paused', now = now, due = due})
end
if rmax > 0 then
  local used = tonumber(redis.call('GET', b .. ':limiter') or '0')
  if used >= rmax then
    local ttl = redis.call('PTTL', b .. ':limiter')
    if ttl < 0 then ttl = 0 end
    return cjson.encode({status = 'limited', now = now, due = due, reopens_in = ttl})
  end
  count = math.min(count, rmax - used)
end
local popped = redis.call('ZPOPMIN', b .. ':wait', count)
local out = {}
local deadlines, leases = {}, {}
-- Every token of this claim is this prefix and a number: the prefix goes into the
-- reply once, the worker id (any text) escaped once.
local prefix = ARGV[2] .. '|' .. now_text .. '|' .. ARGV[4]
local deadline = tostring(now + lease)
for i = 1, #popped, 2 do
  local id = popped[i]
  local f = redis.call('HMGET', b .. ':job:' .. id, unpack(fields))
  if f[1] then
    local n = tostring(i)
    deadlines[#deadlines + 1] = deadline
    deadlines[#deadlines + 1] = id
    leases[#leases + 1] = id
    leases[#leases + 1] = prefix .. n
    out[#out + 1] = encode(id, '"' .. n .. '"', f)
  end
end
local claimed = #leases / 2
if claimed > 0 then
  redis.call('ZADD', b .. ':active', unpack(deadlines))
  redis.call('HSET', b .. ':leases', unpack(leases))
  if rmax > 0 and redis.call('INCRBY', b .. ':limiter', claimed) == claimed then
    redis.call('PEXPIRE', b .. ':limiter', ARGV[6])
  end
end
-- Work left: wake one more idle worker (it wakes the next); none left: drop stale
-- markers so idle workers do not wake for nothing.
if redis.call('ZCARD', b .. ':wait') > 0 then wake(b) else redis.call('DEL', b .. ':marker') end
return reply(out, due, cjson.encode(prefix))
