-- PROTOCOL.md section 13.5 for one session of section 15's layout.
-- KEYS[1]: its key. ARGV: channel, sid, its JSON as read, the new JSON.
-- 'conflict' (nothing written) when its JSON changed since it was read; 0
-- when it is gone; else the signature kept, the JSON replaced, the ttl
-- kept, the notice, and 1.
-- #include lib-compact-value.lua
-- luacheck: read globals compact_signature compact_json
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
if compact_json(value) ~= ARGV[3] then return 'conflict' end
redis.call('SET', KEYS[1], compact_signature(value) .. ARGV[4], 'KEEPTTL')
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
