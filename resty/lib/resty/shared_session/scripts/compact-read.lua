-- PROTOCOL.md section 15: a session's one key, its value and PTTL
-- atomically (the value is judged by the caller). KEYS[1]: the key.
local value = redis.call('GET', KEYS[1])
if not value then return {false, -2} end
return {value, redis.call('PTTL', KEYS[1])}
