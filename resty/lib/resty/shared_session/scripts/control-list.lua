-- PROTOCOL.md section 13.1 on the v1 layout: a user's live sessions.
-- KEYS[1]: the user's index. ARGV: the data key name without the session
-- id, the user id field, the user id. Each member whose data key exists and
-- names the user: sid, data, pttl (by existence, not by score: a session
-- that nginx kept alive may have outlived the score its last write gave
-- it). A member whose data names another user is not listed.
-- #include lib-session-user.lua
-- luacheck: read globals session_user
local out = {}
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. sid
  local data = redis.call('GET', key)
  if data and session_user(data, ARGV[2]) == ARGV[3] then
    out[#out + 1] = sid
    out[#out + 1] = data
    out[#out + 1] = redis.call('PTTL', key)
  end
end
return out
