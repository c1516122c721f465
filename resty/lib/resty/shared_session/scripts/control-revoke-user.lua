-- PROTOCOL.md section 13 on the v1 layout: ends every session of a user but
-- some. KEYS[1]: the user's index. ARGV: channel, the data, signature and
-- groups key names without the session id, then the ids to keep. Answers
-- how many existed.
local keep = {}
for i = 5, #ARGV do keep[ARGV[i]] = true end
local n = 0
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not keep[sid] then
    local gone = redis.call('DEL', ARGV[2] .. sid, ARGV[3] .. sid,
      ARGV[4] .. sid)
    if gone > 0 then n = n + 1 end
    redis.call('ZREM', KEYS[1], sid)
    redis.call('PUBLISH', ARGV[1], sid)
  end
end
return n
