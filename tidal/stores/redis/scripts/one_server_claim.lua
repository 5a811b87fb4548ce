--! function candidates: global_candidates
--! function claim_one: instance_claim
--! uses settle
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
