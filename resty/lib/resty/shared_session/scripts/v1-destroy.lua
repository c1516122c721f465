-- Ends one session of section 3's three keys (logout, revocation, a
-- half-deleted or expired one): its keys, its member in its user's index
-- when the layout keeps the index in the session's script (section 13.1),
-- and the notice (section 7).
-- KEYS: data, signature, groups. ARGV: channel, sid, the user id field (''
-- when the index is not this script's), the index key name without the
-- user id. Answers 1 when the data key existed.
local data = redis.call('GET', KEYS[1])
if data and ARGV[3] ~= '' then
  local ok, session = pcall(cjson.decode, data)
  if ok and type(session) == 'table' then
    local user = session[ARGV[3]]
    if type(user) == 'string' and user ~= '' then
      redis.call('ZREM', ARGV[4] .. user, ARGV[2])
    end
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return data and 1 or 0
