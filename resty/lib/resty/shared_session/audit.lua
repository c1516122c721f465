-- resty.shared_session.audit: the audit log. One JSON object per line in
-- nginx's error log, after the fixed prefix "shared_session audit: ", for
-- every refusal other than "no session cookie" (a 401 with no cookie at all
-- is every anonymous visitor, not an event), and for a sampled fraction of
-- allows:
--
--   shared_session audit: {"result":"refused","reason":"not_member",
--     "status":403,"session":"<event id>","at":1765000000000,"dropped":12}
--
-- `session` is the session's event id (PROTOCOL.md 16.1), never its id nor
-- a part of it; null when nginx has no secret (stored-signature mode: the
-- event id is keyed by the secret, which nginx then does not hold), or no
-- session id was read. `at`: ms since the epoch. `dropped` (only when not
-- 0): the lines this worker did not write since its last one, past
-- max_lines_per_second: a flood of forged cookies must not fill the disk.

local log = require "resty.shared_session.log"

local ngx = ngx
local ngx_log = ngx.log
local ngx_now = ngx.now

local floor = math.floor
local random = math.random

local event_id = log.event_id


local _M = { _VERSION = "0.1.0", PREFIX = "shared_session audit: " }

local PREFIX = _M.PREFIX

local LEVELS = {
    debug = ngx.DEBUG, info = ngx.INFO, notice = ngx.NOTICE, warn = ngx.WARN,
    error = ngx.ERR, crit = ngx.CRIT, alert = ngx.ALERT, emerg = ngx.EMERG,
}

local DEFAULTS = {
    level = "warn",             -- the error log level of the lines
    allow_sample = 0,           -- the fraction of allows logged, 0 to 1
    max_lines_per_second = 100, -- per worker; past it, lines are counted
}


-- The audit part of the configuration, from configure()'s `audit` option:
-- nil when absent or false. `check`: config.lua's option checks (raise).
-- `event_key`: the key of event ids (nil: stored mode, no secret).
function _M.new(opts, check, event_key)
    if opts == nil or opts == false then
        return nil
    end
    if opts == true then
        opts = {}
    end
    local o = check.options("audit", opts, DEFAULTS, "must be a table, or true")
    local level = o.level
    if not LEVELS[level] then
        check.error("audit.level", "must be one of debug, info, notice, warn,"
                    .. " error, crit, alert, emerg")
    end
    local sample = check.number("audit.allow_sample", o.allow_sample, 0,
                                false, 1)
    local max = check.number("audit.max_lines_per_second",
                             o.max_lines_per_second, 1, true)
    return {
        level = LEVELS[level],
        allow_sample = sample,
        max = max,
        event_key = event_key,
        -- This worker's: the second counted, lines in it, lines dropped.
        second = 0, lines = 0, dropped = 0,
    }
end


-- Whether this worker may write one more line now (else it is counted).
local function admit(a)
    local second = floor(ngx_now())
    if second ~= a.second then
        a.second, a.lines = second, 0
    end
    if a.lines >= a.max then
        a.dropped = a.dropped + 1
        return false
    end
    a.lines = a.lines + 1
    return true
end


local function write(a, result, reason, status, sid)
    if not admit(a) then
        return
    end
    local session = "null"
    local key = a.event_key
    if key and sid then
        local id = event_id(key, sid)
        if id then
            session = '"' .. id .. '"'
        end
    end
    local dropped = a.dropped
    a.dropped = 0
    ngx_log(a.level, PREFIX, '{"result":"', result, '","reason":"', reason,
            '","status":', status, ',"session":', session, ',"at":',
            floor(ngx_now() * 1000), dropped > 0 and ',"dropped":' .. dropped
            or "", "}")
end


-- A refusal: `word` its reason (reasons.lua), `sid` the session id when one
-- was read. No line for a request without a session cookie.
function _M.refused(a, status, word, sid, no_cookie)
    if no_cookie then
        return
    end
    write(a, status == 503 and "unavailable" or "refused", word, status, sid)
end


-- An allowed request: a line for a sampled fraction of them.
function _M.allowed(a, sid)
    local sample = a.allow_sample
    if sample > 0 and (sample >= 1 or random() < sample) then
        write(a, "allowed", "none", 200, sid)
    end
end


return _M
