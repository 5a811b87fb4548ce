"""The Lua scripts of the Redis store (:mod:`tidal.stores.redis`, whose
docstring draws the key layout they work on).

Each script touches the keys of one hash slot only: the ``INSTANCE_*``
scripts the keys of one instance (tag ``{ns:component:instance}``), the
``GLOBAL_*`` scripts the global keys (tag ``{ns}``). Keys a script derives
from a prefix (an op's hash, a flow's queue) share the tag of the keys it is
passed. Times are milliseconds of the server's clock (``TIME``), so that the
clocks of clients never matter; they stay below 14 digits, which Lua prints
exactly.
"""

from __future__ import annotations

_NOW = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

GLOBAL_ENQUEUE = (
    _NOW
    + """
-- KEYS: ids.  ARGV: G, n, then n times: component, instance, dedupe key
-- ('' for none), dedupe ttl ms, owner (component:instance, escaped).
-- Per op: its new id, or 0 when its dedupe key belongs to another instance.
local G, n = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local out = {}
for i = 0, n - 1 do
  local b = 3 + i * 5
  local comp, inst, dkey, ttl, owner = ARGV[b], ARGV[b + 1], ARGV[b + 2], tonumber(ARGV[b + 3]), ARGV[b + 4]
  local go = true
  if dkey ~= '' then
    local key = G .. ':dedupe:' .. dkey
    local holder = redis.call('GET', key)
    if holder then
      -- The instance's own queue decides, atomically with the push, whether
      -- this is a repeat: so a process killed between this script and its
      -- push leaves the key usable by the next hand-over of the same op.
      go = holder == owner
    elseif ttl > 0 then
      redis.call('SET', key, owner, 'PX', ttl)
    end
  end
  if go then
    local id = redis.call('INCR', KEYS[1])
    redis.call('HSET', G .. ':alloc:' .. comp, inst, id .. ':' .. now)
    local ready = G .. ':ready:' .. comp
    local head = redis.call('ZSCORE', ready, inst)
    if (not head) or tonumber(head) > id then
      redis.call('ZADD', ready, id, inst)
    end
    out[#out + 1] = id
  else
    out[#out + 1] = 0
  end
end
return out
"""
)

GLOBAL_CANDIDATES = (
    _NOW
    + """
-- KEYS: ids (only to route the call to the global slot's node).
-- ARGV: G, K, components...  Up to K instances with queued ops and no
-- (known) lease, oldest head op first: component index (0-based), instance,
-- last allocated op id, and how many ms ago it was allocated.
local G, K = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local found = {}
for ci = 3, #ARGV do
  local leased = G .. ':leased:' .. ARGV[ci]
  redis.call('ZREMRANGEBYSCORE', leased, '-inf', now)
  local ready = G .. ':ready:' .. ARGV[ci]
  local taken, offset = 0, 0
  while taken < K do
    local page = redis.call('ZRANGE', ready, offset, offset + 63, 'WITHSCORES')
    if #page == 0 then break end
    for j = 1, #page, 2 do
      if taken < K and not redis.call('ZSCORE', leased, page[j]) then
        found[#found + 1] = {tonumber(page[j + 1]), ci, page[j]}
        taken = taken + 1
      end
    end
    offset = offset + 64
  end
end
table.sort(found, function(a, b) return a[1] < b[1] end)
local out = {}
for i = 1, math.min(K, #found) do
  local f = found[i]
  local alloc = redis.call('HGET', G .. ':alloc:' .. ARGV[f[2]], f[3])
  local id, at = 0, now
  if alloc then
    local a, t = string.match(alloc, '^(%d+):(%d+)$')
    id, at = tonumber(a), tonumber(t)
  end
  out[#out + 1] = f[2] - 3
  out[#out + 1] = f[3]
  out[#out + 1] = id
  out[#out + 1] = now - at
end
return out
"""
)

_SETTLE_FN = """
-- Points the ready entry of an instance at its new head op, or removes it
-- when no op can be pending or on its way: every id allocated to the
-- instance is at most the watermark, so a push of any of them is either
-- done (and retired) or will be refused. Drops the lease hint if asked.
local function settle(ready, alloc, leased, inst, head, watermark, unlease)
  if unlease then redis.call('ZREM', leased, inst) end
  if head > 0 then
    redis.call('ZADD', ready, head, inst)
    return 1
  end
  local last = redis.call('HGET', alloc, inst)
  local id = 0
  if last then id = tonumber(string.match(last, '^(%d+)')) end
  if id <= watermark then
    redis.call('ZREM', ready, inst)
    redis.call('HDEL', alloc, inst)
    return 0
  end
  return 1
end
"""

GLOBAL_SETTLE = (
    _SETTLE_FN
    + """
-- KEYS: ready, alloc, leased.  ARGV: instance, head op id (0: queue empty),
-- push watermark, '1' to drop the lease hint.
return settle(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1')
"""
)

_DEDUPE_FN = """
-- Whether dedupe key dkey was used by this instance within its ttl (set dd:
-- key -> expiry ms); if not, it is recorded now. The set is pruned once per
-- script, and goes when its last key expires should no later push prune it.
local pruned = false
local function repeated(dd, dkey, ttl, now)
  if not pruned then
    redis.call('ZREMRANGEBYSCORE', dd, '-inf', now)
    pruned = true
  end
  if redis.call('ZSCORE', dd, dkey) then return true end
  if ttl > 0 then
    redis.call('ZADD', dd, now + ttl, dkey)
    local pttl = redis.call('PTTL', dd)
    if pttl >= 0 and pttl < ttl or pttl == -1 then redis.call('PEXPIRE', dd, ttl) end
  end
  return false
end
"""

INSTANCE_PUSH = (
    _NOW
    + _DEDUPE_FN
    + """
-- KEYS: m, q, flows, dd.  ARGV: T, n, then n times (ids ascending): id,
-- flow, payload, dedupe key ('' for none), dedupe ttl ms.
-- {-1} when the first id is not above the watermark (the caller allocates
-- new ids and tries again), else {head op id or 0, watermark, then per op 1
-- (queued) or 0 (a repeated dedupe key)}.
local T, n = ARGV[1], tonumber(ARGV[2])
local m = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[3]) <= m then return {-1} end
local now = now_ms()
local out, last = {0, 0}, m
for i = 0, n - 1 do
  local b = 3 + i * 5
  local id, flow, dkey, ttl = ARGV[b], ARGV[b + 1], ARGV[b + 3], tonumber(ARGV[b + 4])
  local fresh = dkey == '' or not repeated(KEYS[4], dkey, ttl, now)
  if fresh then
    redis.call('ZADD', KEYS[2], id, id)
    redis.call('ZADD', T .. ':q:' .. flow, id, id)
    redis.call('SADD', KEYS[3], flow)
    redis.call('HSET', T .. ':op:' .. id, 'f', flow, 'p', ARGV[b + 2], 't', now, 'n', 0)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  last = id
end
redis.call('SET', KEYS[1], last)
local head = redis.call('ZRANGE', KEYS[2], 0, 0)
out[1] = tonumber(head[1] or '0')
out[2] = tonumber(last)
return out
"""
)

INSTANCE_CLAIM = (
    _NOW
    + """
-- KEYS: lease, q, m, f, flows.  ARGV: T, token, lease ms, max ops, count
-- newer ('1'), fence (raise the watermark to this id when the queue is empty).
-- An op whose record is malformed (a field missing or garbled: not written by
-- Tidal) is never handed out: it leaves the queue here, recorded as failed
-- with the reason, and is listed in the reply (as id, error) for the caller
-- to log. {0, lease expiry} held by someone; {1, watermark, nbad, bad...}
-- nothing (else) queued; {2, expiry, nbad, bad..., then per op: id, flow,
-- payload, enqueued ms, attempts, newer}.
local T = ARGV[1]
local now = now_ms()
local held = redis.call('HGET', KEYS[1], 'x')
if held and tonumber(held) > now then return {0, tonumber(held)} end
local max = tonumber(ARGV[4])
local ops, left, bad = {}, {}, {}
local function reject(id, key, flow, why)
  local err = 'op ' .. id .. ' is malformed in the store (' .. table.concat(why, '; ') .. '); it was not run'
  redis.call('ZREM', KEYS[2], id)
  for _, f in ipairs(redis.call('SMEMBERS', KEYS[5])) do redis.call('ZREM', T .. ':q:' .. f, id) end
  if string.match(id, '^%d+$') then
    redis.call('ZADD', KEYS[4], id, id)
    if flow and redis.call('SISMEMBER', KEYS[5], flow) == 1 then
      redis.call('ZADD', T .. ':f:' .. flow, id, id)
    end
    redis.call('HSET', key, 'e', err, 'x', now)
    redis.call('HDEL', key, 'p')
  end
  bad[#bad + 1] = id
  bad[#bad + 1] = err
end
while #ops < max do
  -- Valid ops stay queued until their commit, rejected ones leave: so the
  -- next unseen id is always at offset #ops.
  local ids = redis.call('ZRANGE', KEYS[2], #ops, max - 1)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local key = T .. ':op:' .. id
    local d = redis.call('HMGET', key, 'f', 'p', 't', 'n')
    local why = {}
    if not string.match(id, '^%d+$') then why[#why + 1] = 'its id is not a number' end
    if not d[1] then why[#why + 1] = 'no flow (f)' end
    if not d[2] then why[#why + 1] = 'no payload (p)' end
    if not (d[3] and string.match(d[3], '^%d+$')) then why[#why + 1] = 'no enqueue time (t)' end
    if d[4] and not string.match(d[4], '^%d+$') then why[#why + 1] = 'attempts (n) not a count' end
    if #why > 0 then
      reject(id, key, d[1], why)
    else
      local attempts = redis.call('HINCRBY', key, 'n', 1)
      ops[#ops + 1] = {id, d[1], d[2], d[3], attempts}
      left[d[1]] = (left[d[1]] or 0) + 1
    end
  end
end
if #ops == 0 then
  local m = tonumber(redis.call('GET', KEYS[3]) or '0')
  local fence = tonumber(ARGV[6])
  if fence > m then
    redis.call('SET', KEYS[3], fence)
    m = fence
  end
  local out = {1, m, #bad / 2}
  for _, b in ipairs(bad) do out[#out + 1] = b end
  return out
end
local expires = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 't', ARGV[2], 'x', expires)
if ARGV[5] == '1' then
  local after = '(' .. ops[#ops][1]
  for flow, c in pairs(left) do
    left[flow] = c + redis.call('ZCOUNT', T .. ':q:' .. flow, after, '+inf')
  end
end
local out = {2, expires, #bad / 2}
for _, b in ipairs(bad) do out[#out + 1] = b end
for _, op in ipairs(ops) do
  left[op[2]] = left[op[2]] - 1
  for j = 1, 5 do out[#out + 1] = op[j] end
  out[#out + 1] = left[op[2]]
end
return out
"""
)

INSTANCE_COMMIT = (
    _NOW
    + """
-- KEYS: meta, vals, vers, lease, q, f, m, at.  ARGV: T, claimed ('1'), token,
-- expected version ('' for any), bump, history versions to keep, n changes,
-- key/value pairs, n deleted, keys, n claimed ops, ids, n failed, id/error
-- pairs. A failed op keeps its payload, so that it can be retried.
-- {-1} lease lost; {-2} no such instance; {-3, version} version conflict;
-- {version} without a claim; {version, head op id or 0, watermark} with one.
local T, claimed = ARGV[1], ARGV[2] == '1'
local now = now_ms()
if claimed then
  local lease = redis.call('HMGET', KEYS[4], 't', 'x')
  if lease[1] ~= ARGV[3] or (not lease[2]) or tonumber(lease[2]) <= now then return {-1} end
end
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return {-2} end
v = tonumber(v)
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= v then return {-3, v} end
local keep = tonumber(ARGV[6])
local i = 7
local nchg = tonumber(ARGV[i])
local chg = i + 1
i = chg + 2 * nchg
local ndel = tonumber(ARGV[i])
local del = i + 1
i = del + ndel
-- Before a key is overwritten, its current version moves to the front of
-- its history list T:h:<key> as "version:ms:=value" ("...:-" a deletion).
local function remember(k)
  if keep <= 0 then return end
  local was = redis.call('ZSCORE', KEYS[3], k)
  if not was then return end
  local entry = math.floor(tonumber(was)) .. ':' .. (redis.call('HGET', KEYS[8], k) or '') .. ':'
  local old = redis.call('HGET', KEYS[2], k)
  if old then entry = entry .. '=' .. old else entry = entry .. '-' end
  local h = T .. ':h:' .. k
  redis.call('LPUSH', h, entry)
  redis.call('LTRIM', h, 0, keep - 1)
end
if nchg + ndel > 0 then
  v = v + math.max(tonumber(ARGV[5]), 1)
  redis.call('HSET', KEYS[1], 'v', v, 'u', now)
  for j = chg, chg + 2 * nchg - 1, 2 do
    remember(ARGV[j])
    redis.call('HSET', KEYS[2], ARGV[j], ARGV[j + 1])
    redis.call('ZADD', KEYS[3], v, ARGV[j])
    redis.call('HSET', KEYS[8], ARGV[j], now)
  end
  for j = del, del + ndel - 1 do
    -- A deleted key keeps its entry in vers (a tombstone), so that readers
    -- asking what changed since an older version learn of the deletion.
    if redis.call('ZSCORE', KEYS[3], ARGV[j]) then
      remember(ARGV[j])
      redis.call('HDEL', KEYS[2], ARGV[j])
      redis.call('ZADD', KEYS[3], v, ARGV[j])
      redis.call('HSET', KEYS[8], ARGV[j], now)
    end
  end
end
if not claimed then return {v} end
local nret = tonumber(ARGV[i])
local ids, seen, errors = {}, {}, {}
for j = i + 1, i + nret do
  ids[#ids + 1] = ARGV[j]
  seen[ARGV[j]] = true
end
i = i + nret + 1
for j = i + 1, i + 2 * tonumber(ARGV[i]), 2 do
  errors[ARGV[j]] = ARGV[j + 1]
  if not seen[ARGV[j]] then ids[#ids + 1] = ARGV[j] end
end
for _, id in ipairs(ids) do
  if redis.call('ZSCORE', KEYS[5], id) then
    local key = T .. ':op:' .. id
    local flow = redis.call('HGET', key, 'f')
    redis.call('ZREM', KEYS[5], id)
    if flow then
      redis.call('ZREM', T .. ':q:' .. flow, id)
    else
      -- Its record vanished since the claim (not Tidal's doing): no error
      -- here, as the state is written already; just unqueue it everywhere.
      for _, f in ipairs(redis.call('SMEMBERS', T .. ':flows')) do redis.call('ZREM', T .. ':q:' .. f, id) end
    end
    if errors[id] then
      redis.call('ZADD', KEYS[6], id, id)
      if flow then redis.call('ZADD', T .. ':f:' .. flow, id, id) end
      redis.call('HSET', key, 'e', errors[id], 'x', now)
    else
      redis.call('DEL', key)
    end
  end
end
redis.call('DEL', KEYS[4])
local head = redis.call('ZRANGE', KEYS[5], 0, 0)
return {v, tonumber(head[1] or '0'), tonumber(redis.call('GET', KEYS[7]) or '0')}
"""
)

INSTANCE_RENEW = (
    _NOW
    + """
-- KEYS: lease.  ARGV: token, lease ms.  The new expiry, 0 if the lease is lost.
local now = now_ms()
local lease = redis.call('HMGET', KEYS[1], 't', 'x')
if lease[1] ~= ARGV[1] or (not lease[2]) or tonumber(lease[2]) <= now then return 0 end
local expires = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'x', expires)
return expires
"""
)

INSTANCE_RELEASE = """
-- KEYS: lease.  ARGV: token.  1 if it was this token's lease and is gone now.
if redis.call('HGET', KEYS[1], 't') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

INSTANCE_CREATE = (
    _NOW
    + """
-- KEYS: meta, vals, vers, at.  ARGV: n, key/value pairs.  {created, version}.
local v = redis.call('HGET', KEYS[1], 'v')
if v then return {0, tonumber(v)} end
local now = now_ms()
redis.call('HSET', KEYS[1], 'v', 1, 'c', now, 'u', now)
for j = 2, 1 + 2 * tonumber(ARGV[1]), 2 do
  redis.call('HSET', KEYS[2], ARGV[j], ARGV[j + 1])
  redis.call('ZADD', KEYS[3], 1, ARGV[j])
  redis.call('HSET', KEYS[4], ARGV[j], now)
end
return {1, 1}
"""
)

INSTANCE_READ = """
-- KEYS: meta, vals, vers.  ARGV: since.  nil if no instance; else
-- {version, flat key/value list} where a deleted key's value is nil.
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return false end
local since = tonumber(ARGV[1])
if since <= 0 then return {tonumber(v), redis.call('HGETALL', KEYS[2])} end
local out = {}
for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. since, '+inf')) do
  out[#out + 1] = k
  out[#out + 1] = redis.call('HGET', KEYS[2], k)
end
return {tonumber(v), out}
"""

INSTANCE_DELETE = """
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
"""

INSTANCE_LAST_OP = """
-- KEYS: a pending and a failed ops zset.  The highest id in either, 0 if none.
local best = 0
for _, k in ipairs(KEYS) do
  local top = redis.call('ZRANGE', k, -1, -1)
  if top[1] and tonumber(top[1]) > best then best = tonumber(top[1]) end
end
return best
"""
