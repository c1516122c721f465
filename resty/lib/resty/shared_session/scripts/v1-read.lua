-- A session of section 3's three keys in the cluster layout (the v1 layout
-- reads the same with plain commands, in one write), read atomically: its
-- JSON and remaining time to live (ms); when the data is missing, how many
-- of its sibling keys are left over (PROTOCOL.md section 9: a half-deleted
-- session); and the not-before mark when the layout keeps it in the
-- session's slot (section 13.2).
-- KEYS: data, signature, groups, [the not-before mark].
local mark = false
if KEYS[4] then mark = redis.call('GET', KEYS[4]) end
local data = redis.call('GET', KEYS[1])
if not data then
  return {false, -2, redis.call('EXISTS', KEYS[2], KEYS[3]), mark}
end
return {data, redis.call('PTTL', KEYS[1]), 0, mark}
