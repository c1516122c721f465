-- resty.shared_session.session_id: timed session ids (PROTOCOL.md section 11).
--
-- `<issued>_<deadline>_<random>`: the Unix times in milliseconds as 12
-- lower-case hex digits each (deadline 0: none), then 22 characters of
-- [A-Za-z0-9_-]. The cookie's signature covers the id, so once it is
-- verified (or a decision made for its signature is found) the times can be
-- trusted. Every function here reads byte by byte: no string is made per
-- request.

local byte = string.byte

local LENGTH = 48
local COOKIE_LENGTH = LENGTH + 1 + 27     -- "<sid>.<sig>"
local DOT = byte(".")
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


-- issued, deadline of the timed id that `s` starts with (positions 13 and
-- 26 hold "_", the rest lower-case hex); nil otherwise.
local function read(s)
    if byte(s, 13) ~= UNDERSCORE or byte(s, 26) ~= UNDERSCORE then
        return nil
    end
    local issued = hex12(s, 1)
    local deadline = issued and hex12(s, 14)
    if not deadline then
        return nil
    end
    return issued, deadline
end


-- issued, deadline (Unix ms; deadline 0: none) of a timed id; nil for an
-- untimed one.
function _M.times(sid)
    if #sid ~= LENGTH then
        return nil
    end
    return read(sid)
end


-- true when `s`, a session id or a whole cookie value "<sid>.<sig>", holds a
-- timed id whose deadline has come at `now_ms`. On a cookie value this
-- reads the id before its signature is checked: use it only to refuse.
function _M.ended(s, now_ms)
    local n = #s
    if n ~= LENGTH and not (n == COOKIE_LENGTH and byte(s, LENGTH + 1) == DOT)
    then
        return false
    end
    local _, deadline = read(s)
    return deadline ~= nil and deadline ~= 0 and now_ms >= deadline
end


return _M
