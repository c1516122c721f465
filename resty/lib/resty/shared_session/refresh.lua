-- resty.shared_session.refresh: activity at nginx keeps a session alive
-- (PROTOCOL.md section 12).
--
-- A request that authorize() allows sets the time to live of the session's
-- three keys back to the session's idle timeout (`_idle` in its JSON), never
-- past the deadline of its timed id, at most once per `interval` per
-- session. The refresh runs in a timer (ngx.timer.at 0) on a pooled
-- connection of its own, after the request has been answered, so it never
-- delays a request and its failure never changes an answer; a failure
-- extends nothing.
--
-- At most once per interval: each worker remembers until when it need not
-- ask (a table, bounded, dropped whole when full: no shared memory on the
-- hot path); across workers, the first to `add` "r:<sid>" to the shared dict
-- refreshes, the others see the key and wait. After a refresh the mark's
-- lifetime becomes min(interval, half the session's idle timeout), so that
-- a session with a short idle timeout is refreshed in time.

local redis = require "resty.shared_session.redis"
local session_id = require "resty.shared_session.session_id"
local log = require "resty.shared_session.log"

local ngx = ngx
local ngx_now = ngx.now
local ngx_log = ngx.log
local timer_at = ngx.timer.at
local sha1_bin = ngx.sha1_bin
local WARN = ngx.WARN
local INFO = ngx.INFO

local type = type
local tostring = tostring
local byte = string.byte
local find = string.find
local format = string.format
local concat = table.concat
local floor = math.floor
local min = math.min

local key = redis.key
local connect = redis.connect
local release = redis.release
local sid_times = session_id.times
local sid_hint = log.sid_hint


local _M = {
    _VERSION = "0.1.0",
    DEFAULT_INTERVAL = 60,  -- s
    RETRY = 1,              -- s before a failed refresh is tried again
    LOG_EVERY = 10,         -- s between two log lines about failed refreshes
    MEMO_SIZE = 10000,      -- sessions a worker remembers before starting over
}

local RETRY = _M.RETRY
local LOG_EVERY = _M.LOG_EVERY
local MEMO_SIZE = _M.MEMO_SIZE


-- KEYS: data, signature, groups. ARGV: now (ms, nginx's clock, as for the
-- deadline itself), the deadline (ms; 0: none), the session field that
-- names its user ('' : no per-user index), the key prefix, the session id.
-- The user's index (PROTOCOL.md section 13.1), when the session is in it,
-- gets the session's new expiry too, and never expires before it: a session
-- kept alive here stays findable by revokeUser and setUserGroups. Returns
-- the session's idle
-- timeout in ms once its keys are set to min(idle, deadline - now); -2 when
-- the data key is gone (nothing is re-created: PEXPIRE never creates a key),
-- -1 when the data holds no usable `_idle` (a v1 writer's session: its
-- lifetime is its writer's business), 0 when the deadline has come.
_M.SCRIPT = [=[
local json = redis.call('GET', KEYS[1])
if not json then return -2 end
local ok, data = pcall(cjson.decode, json)
local idle = ok and type(data) == 'table' and tonumber(data._idle)
if not idle or idle <= 0 or idle ~= idle then return -1 end
local ttl = math.floor(idle * 1000)
local deadline = tonumber(ARGV[2])
if deadline > 0 then
  local left = deadline - tonumber(ARGV[1])
  if left < ttl then ttl = left end
end
if ttl <= 0 then return 0 end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end
local user = ARGV[3] ~= '' and data[ARGV[3]]
if type(user) == 'string' and user ~= '' then
  local index = ARGV[4] .. ':user:' .. user
  local at = tonumber(ARGV[1]) + ttl
  if redis.call('ZADD', index, 'XX', 'GT', 'CH', at, ARGV[5]) == 1 then
    local left = redis.call('PTTL', index)
    if left >= 0 and left < ttl then redis.call('PEXPIRE', index, ttl) end
  end
end
return math.floor(idle * 1000)
]=]

local script_sha    -- hex SHA1 of SCRIPT, made on first use

local function sha()
    if not script_sha then
        local bin = sha1_bin(_M.SCRIPT)
        local hex = {}
        for i = 1, #bin do
            hex[i] = format("%02x", byte(bin, i))
        end
        script_sha = concat(hex)
    end
    return script_sha
end


-- Per worker: sid -> the time (ngx.now()) before which this worker does not
-- ask again. Not request state: a cache that every request may share.
local memo, memo_n = {}, 0

local function remember(sid, seconds)
    if memo_n >= MEMO_SIZE then
        memo, memo_n = {}, 0
    end
    if not memo[sid] then
        memo_n = memo_n + 1
    end
    memo[sid] = ngx_now() + seconds
end


-- This worker and the others wait `seconds` before the next refresh of sid.
local function mark(rf, sid, seconds)
    remember(sid, seconds)
    local dict = rf.dict
    if dict then
        dict:set("r:" .. sid, true, seconds)
    end
end


-- Per worker: when a failure was last logged, and how many were not since.
local logged_at, unlogged = nil, 0

-- Nothing was extended. Try again soon, not on every request: after RETRY
-- when Redis could not be reached, after the interval when it answered with
-- an error (NOPERM from a read-only ACL would answer the same every time).
-- One log line per LOG_EVERY seconds per worker, not one per session.
local function failed(rf, sid, err, answered)
    mark(rf, sid, answered and rf.interval or min(rf.interval, RETRY))
    local now = ngx_now()
    if logged_at and now - logged_at < LOG_EVERY then
        unlogged = unlogged + 1
        return
    end
    ngx_log(WARN, "shared_session: session not refreshed: ", err, " (sid ",
            sid_hint(sid), ")", unlogged > 0
            and format("; %d more failed since the last line", unlogged)
            or "")
    logged_at, unlogged = now, 0
end


-- The timer: one EVALSHA (EVAL the first time a server sees the script).
local function run(premature, rf, r, prefix, sid, deadline)
    if premature then
        return
    end
    local layout = r.cluster_layout
    local data_key = key(prefix, "data", sid, layout)
    local signature_key = key(prefix, "signature", sid, layout)
    local groups_key = key(prefix, "groups", sid, layout)
    -- On a cluster, the primary of the session's slot (section 14).
    local red, err = connect(r, data_key)
    if not red then
        return failed(rf, sid, "redis unavailable: " .. tostring(err))
    end
    local now = floor(ngx_now() * 1000)
    local res
    -- Section 13's index has no cluster form yet: not on the cluster layout.
    local field = layout and "" or rf.user_id_field
    res, err = red:evalsha(sha(), 3, data_key, signature_key, groups_key, now,
                           deadline, field, prefix, sid)
    if not res and type(err) == "string" and find(err, "NOSCRIPT", 1, true)
    then
        res, err = red:eval(_M.SCRIPT, 3, data_key, signature_key, groups_key,
                            now, deadline, field, prefix, sid)
    end
    if not res then
        red:close()
        -- A reply error (not a timeout or a closed connection): Redis answered.
        local answered = err ~= "timeout" and err ~= "closed"
        return failed(rf, sid, "redis error: " .. tostring(err), answered)
    end
    release(red, r)
    if type(res) == "number" and res > 0 then
        -- Its idle timeout is known now: never wait more than half of it.
        mark(rf, sid, min(rf.interval, res / 2000))
    elseif res == -1 then
        ngx_log(INFO, "shared_session: session has no _idle, left to its",
                " writer (sid ", sid_hint(sid), ")")
    end
end


-- From authorize(), for a request it allows: starts a refresh of sid unless
-- one was started less than an interval ago (by any worker). Never raises,
-- never waits for Redis.
function _M.maybe(rf, r, prefix, sid)
    local now = ngx_now()
    local wait_until = memo[sid]
    if wait_until and wait_until > now then
        return
    end

    local dict = rf.dict
    if dict then
        local ok, err = dict:add("r:" .. sid, true, rf.interval)
        if not ok then
            if err == "exists" then
                -- Another worker refreshed it lately; look again in a while.
                remember(sid, min(rf.interval, RETRY))
            end
            return
        end
    end
    remember(sid, rf.interval)

    local _, deadline = sid_times(sid)
    local ok, err = timer_at(0, run, rf, r, prefix, sid, deadline or 0)
    if not ok then
        failed(rf, sid, "no timer: " .. tostring(err))
    end
end


return _M
