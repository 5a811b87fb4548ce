--! uses now
-- KEYS: lease.  ARGV: token, lease ms.  The new expiry, 0 if the lease is lost.
local now = now_ms()
local lease = redis.call('HMGET', KEYS[1], 't', 'x')
if lease[1] ~= ARGV[1] or (not lease[2]) or tonumber(lease[2]) <= now then return 0 end
local expires = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'x', expires)
return expires
