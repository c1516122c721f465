-- #include lib-compact-value.lua
-- luacheck: read globals compact_session
local value = redis.call('GET', KEYS[1])
if not value then return -2 end
local data
if #KEYS == 1 then
  -- The compact layout's one key (PROTOCOL.md sections 15, 15.1): a
  -- malformed value is no session, and nothing is extended.
  data = compact_session(value)
  if not data then return -2 end
else
  local ok, decoded = pcall(cjson.decode, value)
  data = ok and type(decoded) == 'table' and decoded
end
local idle = data and tonumber(data._idle)
if not idle or idle <= 0 or idle ~= idle then return -1 end
local ttl = math.floor(idle * 1000)
local deadline = tonumber(ARGV[2])
if deadline > 0 then
  local left = deadline - tonumber(ARGV[1])
  if left < ttl then ttl = left end
end
if ttl <= 0 then return 0 end
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
local user = ARGV[3] ~= '' and data[ARGV[3]]
if type(user) == 'string' and user ~= '' then
  if ARGV[6] == 'cluster' then return { math.floor(idle * 1000), ttl, user } end
  local index = ARGV[4] .. ':user:' .. user
  local at = tonumber(ARGV[1]) + ttl
  if redis.call('ZADD', index, 'XX', 'GT', 'CH', at, ARGV[5]) == 1 then
    local left = redis.call('PTTL', index)
    if left >= 0 and left < ttl then redis.call('PEXPIRE', index, ttl) end
  end
end
return math.floor(idle * 1000)
