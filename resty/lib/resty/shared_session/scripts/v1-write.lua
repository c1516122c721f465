-- PROTOCOL.md section 8: a write of section 3's three keys that a concurrent
-- logout or group change cannot undo.
-- KEYS: data, signature, groups, then, when the layout keeps section 13 in
-- the session's own script (v1): the not-before mark, and the user's index
-- (section 13.1) when the session has a user.
-- ARGV: mode, data JSON, signature, ttl (s), channel, sid, now (ms), max
-- sessions per user (0: none), the data, signature and groups key names
-- without the session id (for the sessions the limit ends), the user id
-- field and the index key name without the user id ('' both when the index
-- is not this script's), then the groups (to write for "create" and
-- "update-groups"; as read, for "update").
--  - create: a new session id, written as section 3 says;
--  - update / update-groups: only while the data key exists (never
--    re-creates a session deleted after it was read);
--  - update: leaves the groups set alone, and only when it still holds the
--    groups this writer read; otherwise answers the stored groups, for the
--    writer to adopt them and try again.
-- A write whose data names another user than the stored data moves the
-- session from the old user's index to the new one's (section 13.1); the
-- limit of sessions per user counts only the sessions that name the user.
-- #include lib-issued.lua
-- #include lib-session-user.lua
-- luacheck: read globals issued session_user
local mode, ttl, sid = ARGV[1], ARGV[4], ARGV[6]
local field, users = ARGV[12], ARGV[13]
local G = 14 -- the first group's ARGV index
if mode ~= 'create' and redis.call('EXISTS', KEYS[1]) == 0 then
  return 'gone'
end
-- Section 13.2: a session issued before the not-before mark has ended.
if mode ~= 'create' and KEYS[4] then
  local mark = tonumber(redis.call('GET', KEYS[4]) or '0') or 0
  local at = issued(sid)
  if mark > 0 and (at == nil or at < mark) then return 'gone' end
end
if mode == 'update' then
  local stored = redis.call('SMEMBERS', KEYS[3])
  local same = #stored == #ARGV - (G - 1)
  if same then
    local read = {}
    for i = G, #ARGV do read[ARGV[i]] = true end
    for _, g in ipairs(stored) do
      if not read[g] then same = false; break end
    end
  end
  if not same then return stored end
end
-- Section 13.1: a session whose user changed leaves the old user's index.
local user = ''
if field ~= '' then
  user = session_user(ARGV[2], field) or ''
  local old = mode ~= 'create'
    and session_user(redis.call('GET', KEYS[1]), field)
  if old and old ~= '' and old ~= user then
    redis.call('ZREM', users .. old, sid)
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ttl)
redis.call('SET', KEYS[2], ARGV[3], 'EX', ttl)
if mode == 'update' then
  redis.call('EXPIRE', KEYS[3], ttl)
else
  redis.call('DEL', KEYS[3])
  if #ARGV >= G then
    redis.call('SADD', KEYS[3], unpack(ARGV, G))
    redis.call('EXPIRE', KEYS[3], ttl)
  end
end
-- Section 13.1: the user's index, in the same atomic step as the keys.
local index = KEYS[5]
if index then
  local now = tonumber(ARGV[7])
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  redis.call('ZADD', index, now + tonumber(ttl) * 1000, sid)
  local max = tonumber(ARGV[8])
  if mode == 'create' and max > 0 and redis.call('ZCARD', index) > max then
    -- Members whose data names another user are not this user's: out.
    for _, m in ipairs(redis.call('ZRANGE', index, 0, -1)) do
      local named = session_user(redis.call('GET', ARGV[9] .. m), field)
      if m ~= sid and named and named ~= user then
        redis.call('ZREM', index, m)
      end
    end
  end
  if mode == 'create' and max > 0 and redis.call('ZCARD', index) > max then
    -- Over the limit: the oldest sessions (by issue time) end.
    local members = redis.call('ZRANGE', index, 0, -1)
    table.sort(members, function(a, b)
      local ia, ib = issued(a) or 0, issued(b) or 0
      if ia ~= ib then return ia < ib end
      return a < b
    end)
    local excess = #members - max
    for _, old in ipairs(members) do
      if excess <= 0 then break end
      if old ~= sid then
        redis.call('DEL', ARGV[9] .. old, ARGV[10] .. old, ARGV[11] .. old)
        redis.call('ZREM', index, old)
        redis.call('PUBLISH', ARGV[5], old)
        excess = excess - 1
      end
    end
  end
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', index, last[2])
end
redis.call('PUBLISH', ARGV[5], sid)
return 'ok'
