--! function commit: instance_commit
--! uses settle
-- KEYS: those of INSTANCE_COMMIT, then ready, alloc, leased.  ARGV: those of
-- INSTANCE_COMMIT, then the instance id.  A commit with a claim also
-- settles the claim index, as GLOBAL_SETTLE would after it.
local r = commit(KEYS, ARGV)
if r[3] then settle(KEYS[#KEYS - 2], KEYS[#KEYS - 1], KEYS[#KEYS], ARGV[#ARGV], r[2], r[3], true) end
return r
