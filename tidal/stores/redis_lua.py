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

INSTANCE_PUSH = (
    _NOW
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
local out, pruned, last = {0, 0}, false, m
for i = 0, n - 1 do
  local b = 3 + i * 5
  local id, flow, dkey, ttl = ARGV[b], ARGV[b + 1], ARGV[b + 3], tonumber(ARGV[b + 4])
  local fresh = true
  if dkey ~= '' then
    if not pruned then
      redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
      pruned = true
    end
    if redis.call('ZSCORE', KEYS[4], dkey) then
      fresh = false
    elseif ttl > 0 then
      redis.call('ZADD', KEYS[4], now + ttl, dkey)
      -- The whole set goes when its last key expires, should no later
      -- push come to prune it.
      local pttl = redis.call('PTTL', KEYS[4])
      if pttl >= 0 and pttl < ttl or pttl == -1 then redis.call('PEXPIRE', KEYS[4], ttl) end
    end
  end
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


# -- One server ------------------------------------------------------------
#
# On a single Redis server (not a cluster) a script may touch keys of any
# slot, so the two steps that enqueue and commit take on a cluster become
# one script each: a round trip less per enqueued op and per commit. They
# keep every key and rule of the two-step scripts, so that processes using
# either kind can share a server.


def _as_function(name: str, script: str) -> str:
    """``script`` as a local Lua function of (KEYS, ARGV), so that another
    script can call it with keys and arguments of its own."""
    return f"local function {name}(KEYS, ARGV)\n{script}\nend\n"


ONE_SERVER_ENQUEUE = (
    _NOW
    + """
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
local out, pruned, first, last = {}, false, nil, nil
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
    if fresh then
      if not pruned then
        redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
        pruned = true
      end
      if redis.call('ZSCORE', KEYS[5], dkey) then
        fresh = false
      elseif ttl > 0 then
        redis.call('ZADD', KEYS[5], now + ttl, dkey)
        local pttl = redis.call('PTTL', KEYS[5])
        if pttl >= 0 and pttl < ttl or pttl == -1 then redis.call('PEXPIRE', KEYS[5], ttl) end
      end
    end
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
"""
)

ONE_SERVER_COMMIT = (
    _as_function("commit", INSTANCE_COMMIT)
    + _SETTLE_FN
    + """
-- KEYS: those of INSTANCE_COMMIT, then ready, alloc, leased.  ARGV: those of
-- INSTANCE_COMMIT, then the instance id.  A commit with a claim also
-- settles the claim index, as GLOBAL_SETTLE would after it.
local r = commit(KEYS, ARGV)
if r[3] then settle(KEYS[#KEYS - 2], KEYS[#KEYS - 1], KEYS[#KEYS], ARGV[#ARGV], r[2], r[3], true) end
return r
"""
)

ONE_SERVER_CLAIM = (
    _as_function("candidates", GLOBAL_CANDIDATES)
    + _as_function("claim_one", INSTANCE_CLAIM)
    + _SETTLE_FN
    + """
-- KEYS: ids.  ARGV: G, K, namespace (escaped), token, lease ms, max ops,
-- count newer ('1'), fence after ms, then the components (escaped).
-- GLOBAL_CANDIDATES, then INSTANCE_CLAIM on each candidate in turn (an
-- empty one is settled, a granted one hinted as leased) until one grants
-- a lease or reports malformed ops: {component index, instance, number of
-- candidates, then the INSTANCE_CLAIM reply}; else {-1, candidates tried}.
local G, ns = ARGV[1], ARGV[3]
local cargs = {G, ARGV[2]}
for i = 9, #ARGV do cargs[#cargs + 1] = ARGV[i] end
local flat = candidates(KEYS, cargs)
local escapes = {['%'] = '%25', [':'] = '%3A', ['{'] = '%7B', ['}'] = '%7D'}
for k = 1, #flat, 4 do
  local ci, inst, alloc, age = flat[k], flat[k + 1], flat[k + 2], flat[k + 3]
  local comp = ARGV[9 + ci]
  local T = '{' .. ns .. ':' .. comp .. ':' .. string.gsub(inst, '[%%:{}]', escapes) .. '}'
  local fence = 0
  if age > tonumber(ARGV[8]) then fence = alloc end
  local r = claim_one(
    {T .. ':lease', T .. ':q', T .. ':m', T .. ':f', T .. ':flows'},
    {T, ARGV[4], ARGV[5], ARGV[6], ARGV[7], fence}
  )
  if r[1] == 1 then
    settle(G .. ':ready:' .. comp, G .. ':alloc:' .. comp, G .. ':leased:' .. comp, inst, 0, r[2], false)
  elseif r[1] == 2 then
    redis.call('ZADD', G .. ':leased:' .. comp, r[2], inst)
  end
  if r[1] == 2 or (r[1] == 1 and r[3] > 0) then
    local out = {ci, inst, #flat / 4}
    for _, x in ipairs(r) do out[#out + 1] = x end
    return out
  end
end
return {-1, #flat / 4}
"""
)

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
