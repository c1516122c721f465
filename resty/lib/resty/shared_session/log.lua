-- resty.shared_session.log: what a log line may say about a session or a
-- group. Never a whole session id, a signature, a cookie or a secret.

local type = type
local tostring = tostring
local sub = string.sub
local gsub = string.gsub


local _M = { _VERSION = "0.1.0" }


local LOG_SID_CHARS = 6


-- The first few characters of a session id only.
function _M.sid_hint(sid)
    if not sid then
        return "-"
    end
    return sub(sid, 1, LOG_SID_CHARS) .. "..."
end


-- A group id (or any name from outside) cut to 64 characters, with unusual
-- characters replaced by "?".
function _M.group_hint(group_id)
    if type(group_id) ~= "string" then
        return tostring(group_id)
    end
    return (gsub(sub(group_id, 1, 64), "[^A-Za-z0-9_.:@/-]", "?"))
end


return _M
