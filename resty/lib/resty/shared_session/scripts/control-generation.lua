-- PROTOCOL.md section 13.3: a new cache generation for a group.
-- KEYS[1]: the group's generation. ARGV: channel, group.
local n = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], '!generation ' .. n .. ' ' .. ARGV[2])
return n
