--! uses now
-- KEYS: meta, vals, vers, at.  ARGV: n, key/value pairs.  {created, version}.
local v = redis.call('HGET', KEYS[1], 'v')
if v then return {0, tonumber(v)} end
local now = now_ms()
redis.call('HSET', KEYS[1], 'v', 1, 'c', now, 'u', now)
for j = 2, 1 + 2 * tonumber(ARGV[1]), 2 do
  redis.call('HSET', KEYS[2], ARGV[j], ARGV[j + 1])
  redis.call('ZADD', KEYS[3], 1, ARGV[j])
  redis.call('HSET', KEYS[4], ARGV[j], now)
end
return {1, 1}
