-- KEYS: the bucket (R).  ARGV: amount, limit, period in microseconds.
-- GCRA, as tidal/stores/rates.py: R holds the bucket's tat, the server's
-- time in microseconds at which the bucket is full again, and expires then
-- (a missing R is a full bucket). Returns 0 when the amount was taken, else
-- the microseconds to wait (at least 1) and nothing is written.
-- Microseconds, not the milliseconds of the other scripts: a limit of a
-- million tokens a minute is one token per 60 us. They stay below 2^53, so
-- Lua's doubles hold them to a fraction of a microsecond; '%.17g' writes
-- them back without the rounding of Lua's tostring (14 digits).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local amount, limit, period = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new = tat + amount * (period / limit)
local wait = new - period - now
if wait > 0 then return math.max(1, math.ceil(wait)) end
local ttl = math.ceil((new - now) / 1000)
if ttl > 0 then
  redis.call('SET', KEYS[1], string.format('%.17g', new), 'PX', ttl)
end
return 0
