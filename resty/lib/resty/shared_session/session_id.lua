-- resty.shared_session.session_id: timed session ids (PROTOCOL.md section 11).
--
-- `<issued>_<deadline>_<random>`: the Unix times in milliseconds as 12
-- lower-case hex digits each (deadline 0: none), then 22 characters of
-- [A-Za-z0-9_-]. The cookie's signature covers the id, so once it is
-- verified (or a decision made for its signature is found) the times can be
-- trusted. Every function here takes an id already accepted by section 1
-- (cookie.parse), and reads it byte by byte: no string is made per request.

local byte = string.byte

local LENGTH = 48
local UNDERSCORE = byte("_")
local ZERO, NINE = byte("0"), byte("9")
local A, F = byte("a"), byte("f")

local _M = { _VERSION = "0.1.0" }


-- The 12 hex digits from position `from`, as a number; nil if one is not a
-- lower-case hex digit.
local function hex12(sid, from)
    local n = 0
    for i = from, from + 11 do
        local c = byte(sid, i)
        if c >= ZERO and c <= NINE then
            n = n * 16 + (c - ZERO)
        elseif c >= A and c <= F then
            n = n * 16 + (c - A + 10)
        else
            return nil
        end
    end
    return n
end


-- issued, deadline (Unix ms; deadline 0: none) of a timed id; nil for an
-- untimed one.
function _M.times(sid)
    if #sid ~= LENGTH or byte(sid, 13) ~= UNDERSCORE
       or byte(sid, 26) ~= UNDERSCORE
    then
        return nil
    end
    local issued = hex12(sid, 1)
    local deadline = issued and hex12(sid, 14)
    if not deadline then
        return nil
    end
    return issued, deadline
end


-- true when the id is timed and its deadline has come at `now_ms`.
function _M.ended(sid, now_ms)
    if #sid ~= LENGTH then
        return false
    end
    local _, deadline = _M.times(sid)
    return deadline ~= nil and deadline ~= 0 and now_ms >= deadline
end


return _M
