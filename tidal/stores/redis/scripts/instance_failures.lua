-- KEYS: a failed ops zset.  ARGV: T, after, upto ('+inf' for all).
-- Flat: id, flow, error, failed ms per failed op, oldest first.
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], ARGV[3])) do
  local d = redis.call('HMGET', ARGV[1] .. ':op:' .. id, 'f', 'e', 'x')
  out[#out + 1] = id
  out[#out + 1] = d[1] or ''
  out[#out + 1] = d[2] or ''
  out[#out + 1] = d[3] or '0'
end
return out
