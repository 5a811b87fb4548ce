"""The Redis store's scripts for one server (not a cluster): each runs
what takes two single-slot scripts of :mod:`tidal.stores.redis_lua` as one,
touching keys of two hash slots. They keep every key and rule of the
two-step scripts, so that processes using either kind can share a server:
a round trip less per enqueued op, per claim and per worker commit.
"""

from __future__ import annotations

from .redis_lua import _DEDUPE_FN, _NOW, _SETTLE_FN, GLOBAL_CANDIDATES, INSTANCE_CLAIM, INSTANCE_COMMIT


def _as_function(name: str, script: str) -> str:
    """``script`` as a local Lua function of (KEYS, ARGV), so that another
    script can call it with keys and arguments of its own."""
    return f"local function {name}(KEYS, ARGV)\n{script}\nend\n"


ONE_SERVER_ENQUEUE = (
    _NOW
    + _DEDUPE_FN
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
-- candidates, the instance's state version (so that the worker need not
-- read it), then the INSTANCE_CLAIM reply}; else {-1, candidates tried}.
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
    local out = {ci, inst, #flat / 4, tonumber(redis.call('HGET', T .. ':meta', 'v') or '0')}
    for _, x in ipairs(r) do out[#out + 1] = x end
    return out
  end
end
return {-1, #flat / 4}
"""
)
