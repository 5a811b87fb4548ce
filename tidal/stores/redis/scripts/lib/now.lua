-- now_ms(): the server's clock (TIME) in milliseconds, so that the clocks of
-- clients never matter.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
