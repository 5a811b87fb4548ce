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
