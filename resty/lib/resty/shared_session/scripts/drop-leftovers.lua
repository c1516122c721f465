-- Deletes what a reader found of a session that is no session: the
-- signature and groups keys beside a missing data key (section 9), or a
-- malformed value of section 15's layout. In one step with the check that
-- it still is no session: a session written whole since the read (a
-- restore, a login's write) is left alone.
-- KEYS: the data key, then the signature and groups keys (sections 3 and
-- 14); or the session's one key (section 15). ARGV: channel, sid.
-- Answers how many keys it deleted; the notice (section 7) when any.
-- #include lib-compact-value.lua
-- luacheck: read globals compact_session
local value = redis.call('GET', KEYS[1])
if value and (#KEYS > 1 or compact_session(value)) then return 0 end
local deleted = redis.call('DEL', unpack(KEYS))
if deleted > 0 then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return deleted
