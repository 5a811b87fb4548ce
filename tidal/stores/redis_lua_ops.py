"""The Redis store's scripts for operators (see :mod:`tidal.stores.redis_lua`
for the key layout): failed ops, state key listings, key history, retry and
drop of a failed op. Each touches the keys of one instance only.
"""

from __future__ import annotations

from .redis_lua import _NOW

INSTANCE_FAILURES = """
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
"""


INSTANCE_DESCRIBE = """
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
"""

INSTANCE_HISTORY = """
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
"""

INSTANCE_RETRY = (
    _NOW
    + """
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
"""
)

INSTANCE_DROP_FAILED = """
-- KEYS: f.  ARGV: T, op id.  1 if it was a failed op of this instance and is gone.
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
local key = ARGV[1] .. ':op:' .. ARGV[2]
local flow = redis.call('HGET', key, 'f')
redis.call('ZREM', KEYS[1], ARGV[2])
if flow then redis.call('ZREM', ARGV[1] .. ':f:' .. flow, ARGV[2]) end
redis.call('DEL', key)
return 1
"""
