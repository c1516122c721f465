-- PROTOCOL.md section 13.5: new groups for some sessions of section 3's
-- keys, all or none. KEYS: data and groups key of each session. ARGV:
-- channel, then per session: sid, the data as read, the new data, the
-- number of groups, the groups. 'conflict' (and nothing written) when a
-- data key changed since it was read; a session ended since is skipped.
-- Answers how many were changed.
local sessions, a = {}, 2
for k = 1, #KEYS, 2 do
  local n = tonumber(ARGV[a + 3])
  local s = {
    data = KEYS[k], groups = KEYS[k + 1], sid = ARGV[a], new = ARGV[a + 2],
    list = {},
  }
  for i = 1, n do s.list[i] = ARGV[a + 3 + i] end
  local current = redis.call('GET', s.data)
  if current and current ~= ARGV[a + 1] then return 'conflict' end
  s.alive = current ~= false
  sessions[#sessions + 1] = s
  a = a + 4 + n
end
local changed = 0
for _, s in ipairs(sessions) do
  if s.alive then
    local pttl = redis.call('PTTL', s.data)
    redis.call('SET', s.data, s.new, 'KEEPTTL')
    redis.call('DEL', s.groups)
    if #s.list > 0 then
      redis.call('SADD', s.groups, unpack(s.list))
      if pttl > 0 then redis.call('PEXPIRE', s.groups, pttl) end
    end
    redis.call('PUBLISH', ARGV[1], s.sid)
    changed = changed + 1
  end
end
return changed
