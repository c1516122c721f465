-- Ends one session of section 3's three keys (logout, revocation, a
-- half-deleted or expired one): its keys, its member in its user's index
-- when the layout keeps the index in the session's script (section 13.1),
-- and the notice (section 7).
-- KEYS: data, signature, groups. ARGV: channel, sid, the user id field (''
-- when none), the index key name without the user id ('' when the index is
-- not this script's), and, when a user's operation ends it, that user: then
-- a session whose data names another user is left alone (section 13.1).
-- Answers 1 when the data key existed and was deleted, -1 when it names
-- another user than ARGV[5], else 0.
-- #include lib-session-user.lua
-- luacheck: read globals session_user
local data = redis.call('GET', KEYS[1])
local user = data and ARGV[3] ~= '' and session_user(data, ARGV[3])
if data and ARGV[5] and user and user ~= ARGV[5] then return -1 end
if user and user ~= '' and ARGV[4] ~= '' then
  redis.call('ZREM', ARGV[4] .. user, ARGV[2])
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return data and 1 or 0
