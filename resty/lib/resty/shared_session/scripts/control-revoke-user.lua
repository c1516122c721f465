-- PROTOCOL.md section 13 on the v1 layout: ends every session of a user but
-- some. KEYS[1]: the user's index. ARGV: channel, the data, signature and
-- groups key names without the session id, the user id field, the user id,
-- then the ids to keep. A member whose data names another user (section
-- 13.1) is taken out of the index and left alive; one whose data is not a
-- JSON object is ended (it is no session of anyone). Answers how many
-- existed and were ended.
-- #include lib-session-user.lua
-- luacheck: read globals session_user
local keep = {}
for i = 7, #ARGV do keep[ARGV[i]] = true end
local n = 0
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not keep[sid] then
    local data = redis.call('GET', ARGV[2] .. sid)
    local user = data and session_user(data, ARGV[5])
    if user and user ~= ARGV[6] then
      redis.call('ZREM', KEYS[1], sid)
    else
      local gone = redis.call('DEL', ARGV[2] .. sid, ARGV[3] .. sid,
        ARGV[4] .. sid)
      if gone > 0 then n = n + 1 end
      redis.call('ZREM', KEYS[1], sid)
      redis.call('PUBLISH', ARGV[1], sid)
    end
  end
end
return n
