-- Ends one session of section 15's layout: its key and the notice (section
-- 7). KEYS[1]: the session's key. ARGV: channel, sid, user id field, and,
-- when a user's operation ends it, that user: then a session whose data
-- names another user is left alone (section 13.1) and the answer is -1.
-- Else answers false when there was no key, or the user of its data (''
-- when none or malformed), whose index member the caller removes next
-- (section 14.1: another slot).
-- #include lib-compact-value.lua
-- luacheck: read globals compact_session
local value = redis.call('GET', KEYS[1])
if not value then return false end
local session, user = compact_session(value), ''
if session and type(session[ARGV[3]]) == 'string' then
  user = session[ARGV[3]]
end
if ARGV[4] and session and user ~= ARGV[4] then return -1 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return user
