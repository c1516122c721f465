-- PROTOCOL.md section 14, migrating: one v1 session as the source holds
-- it, atomically. KEYS: data, signature, groups. Answers false when the
-- data key is gone, else data, signature, groups and each key's PTTL.
local data = redis.call('GET', KEYS[1])
if not data then return false end
return {data, redis.call('GET', KEYS[2]), redis.call('SMEMBERS', KEYS[3]),
        redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2]),
        redis.call('PTTL', KEYS[3])}
