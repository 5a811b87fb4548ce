--! uses now
-- KEYS: m, q, flows, f.  ARGV: T, failed op id, new id.  Moves a failed op
-- back to the tail of the queue under the new id: {-1} when the new id is
-- not above the watermark (the caller allocates again), {-2} when the op is
-- no failure here, {-3} when its payload is gone (failed before Tidal kept
-- payloads), else {1, head op id, watermark}.
local T, old, new = ARGV[1], ARGV[2], ARGV[3]
local m = tonumber(redis.call('GET', KEYS[1]) or '0')
local head = redis.call('ZRANGE', KEYS[2], 0, 0)
if not redis.call('ZSCORE', KEYS[4], old) then return {-2, tonumber(head[1] or '0'), m} end
local d = redis.call('HMGET', T .. ':op:' .. old, 'f', 'p')
if not (d[1] and d[2]) then return {-3, tonumber(head[1] or '0'), m} end
if tonumber(new) <= m then return {-1} end
redis.call('ZREM', KEYS[4], old)
redis.call('ZREM', T .. ':f:' .. d[1], old)
redis.call('DEL', T .. ':op:' .. old)
redis.call('ZADD', KEYS[2], new, new)
redis.call('ZADD', T .. ':q:' .. d[1], new, new)
redis.call('SADD', KEYS[3], d[1])
redis.call('HSET', T .. ':op:' .. new, 'f', d[1], 'p', d[2], 't', now_ms(), 'n', 0)
redis.call('SET', KEYS[1], new)
head = redis.call('ZRANGE', KEYS[2], 0, 0)
return {1, tonumber(head[1]), tonumber(new)}
