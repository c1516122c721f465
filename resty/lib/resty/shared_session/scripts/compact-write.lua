-- PROTOCOL.md section 8 on section 15's one key. KEYS[1]: the session's key.
-- ARGV: mode, value, ttl (s), channel, sid, then (update) the groups as
-- read. Update and update-groups write only while a well-formed value is
-- stored (a malformed one is no session: 'gone'); update only while its
-- groups are, as a set, those read, and otherwise answers the stored groups.
-- #include lib-compact-value.lua
-- luacheck: read globals compact_session compact_groups
local mode = ARGV[1]
if mode ~= 'create' then
  local session = compact_session(redis.call('GET', KEYS[1]))
  if not session then return 'gone' end
  if mode == 'update' then
    local stored, read = compact_groups(session), {}
    for i = 6, #ARGV do read[ARGV[i]] = true end
    local same = #stored == #ARGV - 5
    for _, g in ipairs(stored) do
      if not read[g] then same = false end
    end
    if not same then return stored end
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 'ok'
