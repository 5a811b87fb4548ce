-- KEYS: meta, vals, vers.  ARGV: since.  nil if no instance; else
-- {version, flat key/value list} where a deleted key's value is nil.
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return false end
local since = tonumber(ARGV[1])
if since <= 0 then return {tonumber(v), redis.call('HGETALL', KEYS[2])} end
local out = {}
for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. since, '+inf')) do
  out[#out + 1] = k
  out[#out + 1] = redis.call('HGET', KEYS[2], k)
end
return {tonumber(v), out}
