--! uses now
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
