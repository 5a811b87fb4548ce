--! uses now
-- KEYS: lease, q, m, f, flows.  ARGV: T, token, lease ms, max ops, count
-- newer ('1'), fence (raise the watermark to this id when the queue is empty).
-- An op whose record is malformed (a field missing or garbled: not written by
-- Tidal) is never handed out: it leaves the queue here, recorded as failed
-- with the reason, and is listed in the reply (as id, error) for the caller
-- to log. {0, lease expiry} held by someone; {1, watermark, nbad, bad...}
-- nothing (else) queued; {2, expiry, nbad, bad..., then per op: id, flow,
-- payload, enqueued ms, attempts, newer}.
local T = ARGV[1]
local now = now_ms()
local held = redis.call('HGET', KEYS[1], 'x')
if held and tonumber(held) > now then return {0, tonumber(held)} end
local max = tonumber(ARGV[4])
local ops, left, bad = {}, {}, {}
local function reject(id, key, flow, why)
  local err = 'op ' .. id .. ' is malformed in the store (' .. table.concat(why, '; ') .. '); it was not run'
  redis.call('ZREM', KEYS[2], id)
  for _, f in ipairs(redis.call('SMEMBERS', KEYS[5])) do redis.call('ZREM', T .. ':q:' .. f, id) end
  if string.match(id, '^%d+$') then
    redis.call('ZADD', KEYS[4], id, id)
    if flow and redis.call('SISMEMBER', KEYS[5], flow) == 1 then
      redis.call('ZADD', T .. ':f:' .. flow, id, id)
    end
    redis.call('HSET', key, 'e', err, 'x', now)
    redis.call('HDEL', key, 'p')
  end
  bad[#bad + 1] = id
  bad[#bad + 1] = err
end
while #ops < max do
  -- Valid ops stay queued until their commit, rejected ones leave: so the
  -- next unseen id is always at offset #ops.
  local ids = redis.call('ZRANGE', KEYS[2], #ops, max - 1)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local key = T .. ':op:' .. id
    local d = redis.call('HMGET', key, 'f', 'p', 't', 'n')
    local why = {}
    if not string.match(id, '^%d+$') then why[#why + 1] = 'its id is not a number' end
    if not d[1] then why[#why + 1] = 'no flow (f)' end
    if not d[2] then why[#why + 1] = 'no payload (p)' end
    if not (d[3] and string.match(d[3], '^%d+$')) then why[#why + 1] = 'no enqueue time (t)' end
    if d[4] and not string.match(d[4], '^%d+$') then why[#why + 1] = 'attempts (n) not a count' end
    if #why > 0 then
      reject(id, key, d[1], why)
    else
      local attempts = redis.call('HINCRBY', key, 'n', 1)
      ops[#ops + 1] = {id, d[1], d[2], d[3], attempts}
      left[d[1]] = (left[d[1]] or 0) + 1
    end
  end
end
if #ops == 0 then
  local m = tonumber(redis.call('GET', KEYS[3]) or '0')
  local fence = tonumber(ARGV[6])
  if fence > m then
    redis.call('SET', KEYS[3], fence)
    m = fence
  end
  local out = {1, m, #bad / 2}
  for _, b in ipairs(bad) do out[#out + 1] = b end
  return out
end
local expires = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 't', ARGV[2], 'x', expires)
if ARGV[5] == '1' then
  local after = '(' .. ops[#ops][1]
  for flow, c in pairs(left) do
    left[flow] = c + redis.call('ZCOUNT', T .. ':q:' .. flow, after, '+inf')
  end
end
local out = {2, expires, #bad / 2}
for _, b in ipairs(bad) do out[#out + 1] = b end
for _, op in ipairs(ops) do
  left[op[2]] = left[op[2]] - 1
  for j = 1, 5 do out[#out + 1] = op[j] end
  out[#out + 1] = left[op[2]]
end
return out
