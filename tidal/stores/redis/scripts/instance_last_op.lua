-- KEYS: a pending and a failed ops zset.  The highest id in either, 0 if none.
local best = 0
for _, k in ipairs(KEYS) do
  local top = redis.call('ZRANGE', k, -1, -1)
  if top[1] and tonumber(top[1]) > best then best = tonumber(top[1]) end
end
return best
