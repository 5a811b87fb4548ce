-- KEYS: f.  ARGV: T, op id.  1 if it was a failed op of this instance and is gone.
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
local key = ARGV[1] .. ':op:' .. ARGV[2]
local flow = redis.call('HGET', key, 'f')
redis.call('ZREM', KEYS[1], ARGV[2])
if flow then redis.call('ZREM', ARGV[1] .. ':f:' .. flow, ARGV[2]) end
redis.call('DEL', key)
return 1
