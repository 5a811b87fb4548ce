--! uses now
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
