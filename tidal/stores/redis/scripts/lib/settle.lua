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
