-- KEYS: meta, vals, vers, at.  nil if no instance; else flat: key, version,
-- bytes, written ms ('' if unknown) per live key.
if not redis.call('HGET', KEYS[1], 'v') then return false end
local out = {}
local vers = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
for j = 1, #vers, 2 do
  local k = vers[j]
  if redis.call('HEXISTS', KEYS[2], k) == 1 then
    out[#out + 1] = k
    out[#out + 1] = vers[j + 1]
    out[#out + 1] = redis.call('HSTRLEN', KEYS[2], k)
    out[#out + 1] = redis.call('HGET', KEYS[4], k) or ''
  end
end
return out
