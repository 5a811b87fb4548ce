--! uses settle
-- KEYS: ready, alloc, leased.  ARGV: instance, head op id (0: queue empty),
-- push watermark, '1' to drop the lease hint.
return settle(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1')
