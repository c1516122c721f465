-- Login throttling: one failed login of the subject (a user at a client
-- address, or an address alone), counted in a sliding window. At `limit`
-- failures within the window the subject is banned for `ban` milliseconds
-- and its count starts again. The time is Redis's own, so every app server
-- counts on one clock. The two keys share the subject's hash tag (one slot).
-- KEYS[1]: the subject's failures (a sorted set scored by time), KEYS[2]: its
-- ban. ARGV: window (ms), limit, ban (ms), a unique member for this failure.
-- Answers {1, ban ms} for a new ban, {0, ms left} while a ban runs, {0, 0}.
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local ban = tonumber(ARGV[3])
local left = redis.call('PTTL', KEYS[2])
if left > 0 then return {0, left} end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[4])
if redis.call('ZCARD', KEYS[1]) >= limit then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], now, 'PX', ban)
  return {1, ban}
end
redis.call('PEXPIRE', KEYS[1], window)
return {0, 0}
