--! uses now, dedupe
-- KEYS: ids, m, q, flows, dd of one instance.  ARGV: G, T, component
-- (escaped), instance, owner, n, then n times: flow, payload, dedupe key
-- ('' for none), dedupe ttl ms.  What GLOBAL_ENQUEUE and INSTANCE_PUSH do
-- together, for ops of one instance; per op its new id, or 0 for a
-- repeated dedupe key. Ids are allocated and pushed at once, so no
-- allocation is ever outstanding: G:alloc is left alone (settle and the
-- fence read it only for two-step enqueues), and the ready entry is made
-- only when an op was queued.
local G, T, comp, inst, owner, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local now = now_ms()
local out, first, last = {}, nil, nil
for i = 0, n - 1 do
  local b = 7 + i * 4
  local flow, dkey, ttl = ARGV[b], ARGV[b + 2], tonumber(ARGV[b + 3])
  local fresh = true
  if dkey ~= '' then
    local key = G .. ':dedupe:' .. dkey
    local holder = redis.call('GET', key)
    if holder then
      fresh = holder == owner
    elseif ttl > 0 then
      redis.call('SET', key, owner, 'PX', ttl)
    end
    fresh = fresh and not repeated(KEYS[5], dkey, ttl, now)
  end
  if fresh then
    local id = redis.call('INCR', KEYS[1])
    redis.call('ZADD', KEYS[3], id, id)
    redis.call('ZADD', T .. ':q:' .. flow, id, id)
    redis.call('SADD', KEYS[4], flow)
    redis.call('HSET', T .. ':op:' .. id, 'f', flow, 'p', ARGV[b + 1], 't', now, 'n', 0)
    first = first or id
    last = id
    out[#out + 1] = id
  else
    out[#out + 1] = 0
  end
end
if last then
  redis.call('SET', KEYS[2], last)
  -- LT: added, or moved to an older head, never to a newer one.
  redis.call('ZADD', G .. ':ready:' .. comp, 'LT', first, inst)
end
return out
