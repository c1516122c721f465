-- Login throttling: lifts the subject's ban and forgets its failures.
-- KEYS[1]: the subject's failures, KEYS[2]: its ban (one slot).
-- Answers 1 when a ban was lifted, else 0.
local banned = redis.call('DEL', KEYS[2])
redis.call('DEL', KEYS[1])
return banned
