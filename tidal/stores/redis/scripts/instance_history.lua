-- KEYS: vals, vers, at.  ARGV: T, key, limit (-1: all).  The key's versions,
-- newest first, each as "version:ms:=value" or "version:ms:-" (deleted).
local k, limit = ARGV[2], tonumber(ARGV[3])
local was = redis.call('ZSCORE', KEYS[2], k)
if not was or limit == 0 then return {} end
local entry = math.floor(tonumber(was)) .. ':' .. (redis.call('HGET', KEYS[3], k) or '') .. ':'
local value = redis.call('HGET', KEYS[1], k)
if value then entry = entry .. '=' .. value else entry = entry .. '-' end
local last = -1
if limit > 0 then last = limit - 2 end
local out = {entry}
if limit < 0 or limit > 1 then
  for _, e in ipairs(redis.call('LRANGE', ARGV[1] .. ':h:' .. k, 0, last)) do out[#out + 1] = e end
end
return out
