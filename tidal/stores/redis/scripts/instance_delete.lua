-- KEYS: meta, vals, vers, lease, q, f, flows, m, at.  ARGV: T, fence.
-- Removes state (history included), ops and lease; returns the watermark,
-- raised to the fence and kept a day so that a push still on its way is refused.
local T = ARGV[1]
for _, k in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do redis.call('DEL', T .. ':h:' .. k) end
redis.call('DEL', KEYS[9])
for _, z in ipairs({KEYS[5], KEYS[6]}) do
  for _, id in ipairs(redis.call('ZRANGE', z, 0, -1)) do redis.call('DEL', T .. ':op:' .. id) end
end
for _, flow in ipairs(redis.call('SMEMBERS', KEYS[7])) do
  redis.call('DEL', T .. ':q:' .. flow, T .. ':f:' .. flow)
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
local m = math.max(tonumber(redis.call('GET', KEYS[8]) or '0'), tonumber(ARGV[2]))
redis.call('SET', KEYS[8], m, 'PX', 86400000)
return m
