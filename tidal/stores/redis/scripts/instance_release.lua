-- KEYS: lease.  ARGV: token.  1 if it was this token's lease and is gone now.
if redis.call('HGET', KEYS[1], 't') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
