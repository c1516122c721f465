-- Login throttling: is the subject (a user at a client address, or an
-- address alone) banned? KEYS[1]: the subject's ban. Answers the ban's
-- milliseconds left, 0 when there is none.
local left = redis.call('PTTL', KEYS[1])
if left > 0 then return left end
return 0
