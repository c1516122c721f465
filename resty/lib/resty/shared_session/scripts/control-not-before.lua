-- PROTOCOL.md section 13.2: moves the not-before mark forward.
-- KEYS[1]: the mark. ARGV: ms, channel. Keeps the greater value, publishes
-- it, answers it.
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local ms = tonumber(ARGV[1])
if ms > current then
  redis.call('SET', KEYS[1], ARGV[1])
  current = ms
end
local text = string.format('%d', current)
redis.call('PUBLISH', ARGV[2], '!not-before ' .. text)
return text
