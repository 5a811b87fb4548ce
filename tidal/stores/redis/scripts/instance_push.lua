--! uses now, dedupe
-- KEYS: m, q, flows, dd.  ARGV: T, n, then n times (ids ascending): id,
-- flow, payload, dedupe key ('' for none), dedupe ttl ms.
-- {-1} when the first id is not above the watermark (the caller allocates
-- new ids and tries again), else {head op id or 0, watermark, then per op 1
-- (queued) or 0 (a repeated dedupe key)}.
local T, n = ARGV[1], tonumber(ARGV[2])
local m = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[3]) <= m then return {-1} end
local now = now_ms()
local out, last = {0, 0}, m
for i = 0, n - 1 do
  local b = 3 + i * 5
  local id, flow, dkey, ttl = ARGV[b], ARGV[b + 1], ARGV[b + 3], tonumber(ARGV[b + 4])
  local fresh = dkey == '' or not repeated(KEYS[4], dkey, ttl, now)
  if fresh then
    redis.call('ZADD', KEYS[2], id, id)
    redis.call('ZADD', T .. ':q:' .. flow, id, id)
    redis.call('SADD', KEYS[3], flow)
    redis.call('HSET', T .. ':op:' .. id, 'f', flow, 'p', ARGV[b + 2], 't', now, 'n', 0)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  last = id
end
redis.call('SET', KEYS[1], last)
local head = redis.call('ZRANGE', KEYS[2], 0, 0)
out[1] = tonumber(head[1] or '0')
out[2] = tonumber(last)
return out
