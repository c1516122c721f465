local json = redis.call('GET', KEYS[1])
if not json then return -2 end
if #KEYS == 1 then
  if not string.find(json, '^' .. string.rep('[A-Za-z0-9_-]', 27) .. '{') then
    return -2
  end
  json = string.sub(json, 28)
  -- PROTOCOL.md section 15.1: beyond the size bound, a malformed value.
  if #json > 65536 then return -2 end
end
local ok, data = pcall(cjson.decode, json)
local idle = ok and type(data) == 'table' and tonumber(data._idle)
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
