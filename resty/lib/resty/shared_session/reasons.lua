-- resty.shared_session.reasons: why a request was refused, in one word a
-- person (or a metric, or an audit line) can use. The log line says the exact
-- reason for the operator (README, "Statuses and log lines"); these few words
-- group those reasons for whoever was refused, and never say more than the
-- status does: no signature detail, no session id.
--
--   no_session     401 no session cookie; 403 a cookie that is no session
--                  here (malformed, bad signature)
--   two_sessions   403 cookies of the name with different values (two
--                  sessions sent: cookie tossing)
--   session_ended  403 expired or destroyed, past its deadline, issued
--                  before the not-before mark
--   not_member     403 not a member of the group (and no group id given)
--   unavailable    503 Redis unreachable or failing, or a setup error

local find = string.find


local _M = {
    _VERSION = "0.1.0",
    NO_SESSION = "no_session",
    TWO_SESSIONS = "two_sessions",
    SESSION_ENDED = "session_ended",
    NOT_MEMBER = "not_member",
    UNAVAILABLE = "unavailable",
}


-- The reasons of authorize() whose word is not given by the status alone.
local BY_REASON = {
    ["no session cookie"] = _M.NO_SESSION,
    ["bad signature"] = _M.NO_SESSION,
    ["malformed cookie: cookies of that name with different values"]
        = _M.TWO_SESSIONS,
    ["no stored signature (expired or destroyed)"] = _M.SESSION_ENDED,
    ["session past its deadline"] = _M.SESSION_ENDED,
    ["session issued before the not-before mark"] = _M.SESSION_ENDED,
    ["not a member of the group"] = _M.NOT_MEMBER,
    ["no group id given"] = _M.NOT_MEMBER,
}


-- The word for authorize()'s status and reason; nil for 200.
function _M.of(status, reason)
    if status == 200 then
        return nil
    end
    if status == 503 then
        return _M.UNAVAILABLE
    end
    local word = BY_REASON[reason]
    if word then
        return word
    end
    if status == 401 or (reason and find(reason, "malformed cookie: ", 1,
                                         true) == 1)
    then
        return _M.NO_SESSION
    end
    return _M.NOT_MEMBER
end


return _M
