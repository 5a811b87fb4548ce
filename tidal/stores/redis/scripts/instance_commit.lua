--! uses now
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
