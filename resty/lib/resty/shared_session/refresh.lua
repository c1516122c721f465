-- resty.shared_session.refresh: activity at nginx keeps a session alive
-- (PROTOCOL.md section 12).
--
-- A request that authorize() allows sets the time to live of the session's
-- three keys (its one key on the compact layout, section 15) back to the
-- session's idle timeout (`_idle` in its JSON), never past the deadline of
-- its timed id, when a refresh is due: when the session's expiry, as last
-- learned (from this refresh's answer, or read with a decision), is closer
-- than `idle - interval`, i.e. once the session has not been extended for
-- `interval`. The interval is `refresh.interval` (at most half the idle
-- timeout) or, unset, follows the idle timeout: min(idle / 2, max(60,
-- idle / 10)). Until a refresh has told it the session's `_idle`, a worker
-- refreshes at the first allowed request. The refresh runs in a timer
-- (ngx.timer.at) on a pooled connection of its own, after the request has
-- been answered, so it never delays a request and its failure never
-- changes an answer; a failure extends nothing. The refreshes a worker
-- starts while its timer is pending (FLUSH_DELAY) go with it: one timer and
-- one pipelined round trip for many sessions.
--
-- Each worker remembers until when it need not ask (a table, bounded,
-- dropped whole when full: no shared memory on the hot path), and the
-- session's idle timeout once a refresh told it; across workers, the first
-- to `add` "r:<sid>" to the shared dict refreshes, the others see the key
-- and wait until it expires. While the refresh is under way the mark lasts
-- RETRY; once Redis has answered, until the next refresh is due: the
-- expiry it set minus idle plus the interval (the interval itself, when
-- the deadline did not cut the expiry), so that a session with a short idle
-- timeout is refreshed in time, on whichever worker its requests arrive.

local redis = require "resty.shared_session.redis"
local resp = require "resty.shared_session.resp"
local session_id = require "resty.shared_session.session_id"
local log = require "resty.shared_session.log"
local metrics = require "resty.shared_session.metrics"

local ngx = ngx
local ngx_now = ngx.now
local ngx_log = ngx.log
local timer_at = ngx.timer.at
local sha1_bin = ngx.sha1_bin
local WARN = ngx.WARN
local INFO = ngx.INFO

local type = type
local error = error
local ipairs = ipairs
local io_open = io.open
local searchpath = package.searchpath
local gsub = string.gsub
local rawget = rawget
local tostring = tostring
local byte = string.byte
local find = string.find
local format = string.format
local concat = table.concat
local floor = math.floor
local min = math.min
local max = math.max

local connect = redis.connect
local release = redis.release
local clock = metrics.clock
local redis_time = metrics.redis_time
local redis_error = metrics.redis_error
local SENT = metrics.REFRESH_SENT
local FAILED = metrics.REFRESH_FAILED
local SKIPPED = metrics.REFRESH_SKIPPED
local sid_times = session_id.times
local session_hint = log.session_hint
local logged = log.logged
local bulk = resp.bulk
local resp_pipeline = resp.pipeline
local reply_error = resp.reply_error


local _M = {
    _VERSION = "0.1.0",
    -- s: the interval while a session's idle timeout is not known (or it
    -- has none: a v1 writer's session), when refresh.interval is unset;
    -- and the least the default interval that follows it can be.
    DEFAULT_INTERVAL = 60,
    RETRY = 1,              -- s before a failed refresh is tried again
    LOG_EVERY = 10,         -- s between two log lines about failed refreshes
    -- Sessions a worker remembers before starting over: above the decision
    -- cache's default worker_entries (20,000), so that a site whose sessions
    -- all fit in that cache does not start over every few seconds (each
    -- start over sends every session's next request to the dict).
    MEMO_SIZE = 100000,
    BATCH = 100,            -- refreshes sent in one pipeline
    -- s from the first refresh a worker starts to its flush: long enough to
    -- gather the refreshes of a busy worker into a few pipelines, short
    -- beside any idle timeout (the refresh is never urgent: it runs once
    -- per interval, at most half the idle timeout after the last one).
    FLUSH_DELAY = 0.05,
    QUEUE_MAX = 10000,      -- refreshes waiting in a worker, at most
}

local RETRY = _M.RETRY
local DEFAULT_INTERVAL = _M.DEFAULT_INTERVAL
local LOG_EVERY = _M.LOG_EVERY
local MEMO_SIZE = _M.MEMO_SIZE
local BATCH = _M.BATCH
local FLUSH_DELAY = _M.FLUSH_DELAY
local QUEUE_MAX = _M.QUEUE_MAX


-- The text of the Redis script resty.shared_session.scripts.<name>, read
-- once, when this module loads (init_by_lua): from the .lua file the rock
-- ships beside its modules, found on package.path as a module would be. A
-- line `-- #include lib-<name>.lua` is replaced by that snippet, as the Nest
-- library's build does (one copy of the compact value's reading for every
-- Redis script).
local function load_script(name)
    local module = "resty.shared_session.scripts." .. name
    local path, err = searchpath(module, package.path)
    local f = path and io_open(path, "rb")
    if not f then
        error("shared_session: Redis script " .. module .. " not found on"
              .. " package.path: " .. tostring(err), 0)
    end
    local text = f:read("*a")
    f:close()
    return (gsub(text, "%-%- #include (lib%-[a-z0-9%-]+)%.lua\n",
                 function(lib) return load_script(lib) end))
end


-- scripts/refresh.lua. KEYS: data, signature, groups; on the compact
-- layout (PROTOCOL.md section 15) the session's one key, whose value is the
-- signature, then the JSON (a malformed value is no session: -2). ARGV: now
-- (ms, nginx's clock, as for the deadline itself), the deadline (ms; 0:
-- none), the session field that names its user ('' : no per-user index),
-- the key prefix, the session id, and on the cluster and compact layouts a
-- sixth, "cluster" (the layout's refresh_shape). The user's index
-- (PROTOCOL.md section 13.1), when the session is in it, gets the session's
-- new expiry too, and never expires before it: a session kept alive here
-- stays findable by revokeUser and setUserGroups. On the cluster and
-- compact layouts the index is in another slot (section 14.1): the script
-- answers { idle timeout, the session's time to live, user id } instead,
-- and INDEX_SCRIPT raises the member afterwards. Returns the session's idle
-- timeout in ms once its keys are set to min(idle, deadline - now); -2 when
-- the data key is gone (nothing is re-created: PEXPIRE never creates a
-- key), -1 when the data holds no usable `_idle` (a v1 writer's session:
-- its lifetime is its writer's business), 0 when the deadline has come.
_M.SCRIPT = load_script("refresh")

-- scripts/index.lua. PROTOCOL.md section 14.1: the session's member in its
-- user's index, in the index's slot, after the session's keys. KEYS[1]: the
-- index. ARGV: now (ms), the session's expiry (ms), sid. Prunes what has
-- expired, raises (or adds) the member, raises the index's own expiry;
-- never lowers either.
_M.INDEX_SCRIPT = load_script("index")

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


-- The interval (s) for a session whose idle timeout is `idle` seconds
-- (PROTOCOL.md section 12): refresh.interval, but never more than half the
-- idle timeout; unset, a tenth of the idle timeout, at least DEFAULT_INTERVAL
-- and at most half of it (31 days: about 3 days; 30 minutes: 3 minutes;
-- 2 s: 1 s). The same text as the application's touch.
local function interval_for(rf, idle)
    local configured = rf.interval
    if configured then
        return min(configured, idle / 2)
    end
    return min(idle / 2, max(DEFAULT_INTERVAL, idle / 10))
end
_M.interval_for = interval_for


-- The interval while the idle timeout is not known.
local function plain_interval(rf)
    return rf.interval or DEFAULT_INTERVAL
end


-- Per worker: sid -> the time (ngx.now()) before which this worker does not
-- ask again; and sid -> the session's idle timeout (s), once a refresh told
-- it. Not request state: caches that every request may share.
local memo, memo_n, idles = {}, 0, {}

-- A refresh under way is remembered as minus the time: this worker waits
-- for it, but says so to no caller that would keep the time (see maybe).
local function remember(sid, seconds, under_way)
    if memo_n >= MEMO_SIZE then
        memo, memo_n, idles = {}, 0, {}
    end
    if not memo[sid] then
        memo_n = memo_n + 1
    end
    local wait_until = ngx_now() + seconds
    memo[sid] = under_way and -wait_until or wait_until
end


-- This worker and the others wait `seconds` before the next refresh of sid.
-- Counts a refresh's outcome (when metrics are on).
local function tally(rf, i)
    local m = rf.metrics
    if m then
        local c = m.counts
        c[i] = c[i] + 1
    end
end


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
local QUEUE_FULL = "too many refreshes waiting"

local function failed(rf, sid, err, answered)
    tally(rf, err == QUEUE_FULL and SKIPPED or FAILED)
    local interval = plain_interval(rf)
    mark(rf, sid, answered and interval or min(interval, RETRY))
    local now = ngx_now()
    if logged_at and now - logged_at < LOG_EVERY then
        unlogged = unlogged + 1
        return
    end
    ngx_log(WARN, "shared_session: session not refreshed: ", err, " (session ",
            session_hint(sid), ")", unlogged > 0
            and format("; %d more failed since the last line", unlogged)
            or "")
    logged_at, unlogged = now, 0
end


-- Redis answered one session's refresh (res, or the error reply err);
-- `ttl`: the time to live (ms) it set, when known (the cluster and compact
-- layouts' answer), else min(idle, deadline - now) as the script computes.
local function answered(rf, sid, res, err, deadline, ttl)
    if err then
        return failed(rf, sid, "redis error: " .. err, true)
    end
    tally(rf, SENT)
    if type(res) == "number" and res > 0 then
        -- The idle timeout and the new expiry are known: the next refresh is
        -- due once the expiry is closer than idle - interval.
        local idle = res / 1000
        if not ttl then
            ttl = res
            if deadline and deadline > 0 then
                ttl = min(ttl, deadline - floor(ngx_now() * 1000))
            end
        end
        ttl = ttl / 1000
        if memo[sid] then     -- (idles holds no sid that memo does not)
            idles[sid] = idle
        end
        if ttl < idle then
            -- Cut at the deadline: no refresh can extend it further.
            return mark(rf, sid, max(ttl, RETRY))
        end
        return mark(rf, sid, interval_for(rf, idle))
    end
    if res == -1 and logged(INFO) then
        -- (Only when written: the event id is an HMAC.)
        ngx_log(INFO, "shared_session: session has no _idle, left to its",
                " writer (session ", session_hint(sid), ")")
    end
    mark(rf, sid, plain_interval(rf))
end


-- Sends on red's socket one refresh per session of `list` ({ sid, deadline }
-- pairs) with `command` (EVALSHA or EVAL) and `script` (its SHA1 or body), in
-- one write, and reads their replies in order. The commands are made here,
-- of resp.lua's bulk strings: resty.redis builds each in Lua, measured at
-- 27-50 us of worker CPU a command on Debian's nginx. Returns the
-- replies (an error reply as { false, message }, as commit_pipeline() gives
-- it), or nil and the socket's error.
local function pipeline(red, rf, ks, list, command, script)
    local now = floor(ngx_now() * 1000)
    local field = rf.user_id_field
    -- What every command of the batch shares, made once. The layout says
    -- how many keys, and what comes after the session id (on the cluster
    -- and compact layouts "cluster": the script answers the user id too,
    -- section 14.1, whose index is refreshed on its own primary).
    local nkeys, last, nlast = ks:refresh_shape()
    local head = "*" .. (8 + nkeys + nlast) .. "\r\n" .. bulk(command)
                 .. bulk(script) .. bulk(nkeys)
    local middle = bulk(now)
    local tail = bulk(field) .. bulk(ks.prefix)
    local out = {}
    for i, item in ipairs(list) do
        local sid = item[1]
        out[i] = head .. ks:refresh_keys(sid) .. middle .. bulk(item[2])
                 .. tail .. bulk(sid) .. last
    end
    return resp_pipeline(rawget(red, "_sock"), out, #list)
end


-- Sends the refresh of every session of `batch` in one pipeline on one
-- connection: one EVALSHA each, and once more as EVAL for those the server
-- answered NOSCRIPT (it had not seen the script). Returns the replies, or
-- nil and the error.
local function send(red, rf, ks, batch)
    local results, err = pipeline(red, rf, ks, batch, "EVALSHA", sha())
    if not results then
        return nil, err
    end
    local again, where = {}, {}
    for i = 1, #batch do
        local e = reply_error(results[i])
        if e and find(e, "NOSCRIPT", 1, true) then
            again[#again + 1], where[#again + 1] = batch[i], i
        end
    end
    if #again > 0 then
        local retried
        retried, err = pipeline(red, rf, ks, again, "EVAL", _M.SCRIPT)
        if not retried then
            return nil, err
        end
        for j = 1, #again do
            results[where[j]] = retried[j]
        end
    end
    return results
end


-- PROTOCOL.md section 14.1: after the session's refresh, its member in its
-- user's index, on the index's own primary. A failure leaves the member's
-- old score (logged; the session's own refresh stands).
local function index_session(ks, sid, ttl, user)
    local r = ks.redis
    local m = r.metrics
    local started = m and clock()
    local index = ks:index_key(user)
    local red, err = connect(r, index)
    if red then
        local now = floor(ngx_now() * 1000)
        local res
        res, err = red:eval(_M.INDEX_SCRIPT, 1, index, now, now + ttl, sid)
        if res then
            if m then
                redis_time(m, "index", clock() - started)
            end
            return release(red, r)
        end
        red:close()
    end
    if m then
        redis_error(m, "index", err)
    end
    ngx_log(WARN, "shared_session: user index not refreshed: ",
            tostring(err), " (session ", session_hint(sid), ")")
end


-- One connection, one round trip (two when the server lacks the script) for
-- a batch of sessions: on one Redis, the primary of their slot on a cluster
-- (a batch there holds one session).
local function refresh_batch(rf, ks, batch)
    local r = ks.redis
    local m = r.metrics
    local started = m and clock()
    local red, err = connect(r, ks:slot_key(batch[1][1]))
    if not red then
        if m then
            redis_error(m, "refresh", err)
        end
        for _, item in ipairs(batch) do
            failed(rf, item[1], "redis unavailable: " .. tostring(err))
        end
        return
    end
    local results
    results, err = send(red, rf, ks, batch)
    if not results then
        red:close()
        if m then
            redis_error(m, "refresh", err)
        end
        -- Redis answered with an error (not a timeout or a closed connection).
        local replied = err ~= "timeout" and err ~= "closed"
        for _, item in ipairs(batch) do
            failed(rf, item[1], "redis error: " .. tostring(err), replied)
        end
        return
    end
    release(red, r)
    if m then
        redis_time(m, "refresh", clock() - started)
    end
    for i, item in ipairs(batch) do
        local res, e = results[i], reply_error(results[i])
        local ttl
        if not e and type(res) == "table" then
            -- The cluster and compact layouts: { idle, ttl, user }; the
            -- index next.
            index_session(ks, item[1], res[2], res[3])
            res, ttl = res[1], res[2]
        end
        answered(rf, item[1], not e and res, e, item[2], ttl)
    end
end


-- Per worker: the refreshes waiting for the flush timer, and whether one is
-- started. One timer and one round trip for the many sessions a busy worker
-- sees at once, not one each.
local queue, queue_n, flush_started = {}, 0, false


-- The timer: every waiting refresh, BATCH at a time.
local function flush(premature, rf, ks)
    local batch, n = queue, queue_n
    queue, queue_n, flush_started = {}, 0, false
    if premature then
        return
    end
    local size = ks.redis:batch_size(BATCH)
    for first = 1, n, size do
        local part = {}
        for i = first, min(n, first + size - 1) do
            part[#part + 1] = batch[i]
        end
        refresh_batch(rf, ks, part)
    end
end


-- A refresh of sid is due in this worker: ask the others, queue it.
local function maybe_start(rf, ks, sid)
    local dict = rf.dict
    if dict then
        -- Until the refresh has answered, the others look again soon (the
        -- mark is false then): then the mark (true) lasts until the next
        -- refresh is due (see mark).
        local mark_key = "r:" .. sid
        local interval = plain_interval(rf)
        local ok, err = dict:add(mark_key, false, min(interval, RETRY))
        if not ok then
            if err == "exists" then
                -- Refreshed lately (by another worker, or by this one before
                -- its memory started over), or being refreshed: look again
                -- when that mark ends.
                local left = dict:ttl(mark_key)
                remember(sid, left and left > 0 and left
                              or min(interval, RETRY),
                         dict:get(mark_key) == false)
            end
            return
        end
    end
    -- Until the answer says when the next one is due (mark), look again in
    -- RETRY at the most.
    remember(sid, min(plain_interval(rf), RETRY), true)

    if queue_n >= QUEUE_MAX then
        return failed(rf, sid, QUEUE_FULL)
    end
    local _, deadline = sid_times(sid)
    queue_n = queue_n + 1
    queue[queue_n] = { sid, deadline or 0 }
    if flush_started then
        return
    end
    local ok, err = timer_at(FLUSH_DELAY, flush, rf, ks)
    if not ok then
        -- Nothing sent: these are tried again after RETRY.
        for i = 1, queue_n do
            failed(rf, queue[i][1], "no timer: " .. tostring(err))
        end
        queue, queue_n = {}, 0
        return
    end
    flush_started = true
end


-- From authorize(), for a request it allows: starts a refresh of sid when
-- one is due (by any worker). Never raises, never waits for Redis. Returns
-- the time (ngx.now()) until which this worker need not call it again for
-- sid; 0 while a refresh is under way (its answer may bring that time
-- closer: half a short idle timeout). `ks`: the keyspace (configure()'s
-- layout of the key prefix, on its topology). `expires_at`: the session's
-- expiry as read with the decision just made (ngx.now() seconds; nil: not
-- read): once this worker knows the idle timeout, an expiry that another
-- party moved later (the application's touch) makes a refresh not due.
function _M.maybe(rf, ks, sid, expires_at)
    local now = ngx_now()
    local wait_until = memo[sid]
    if wait_until then
        if wait_until > now then
            return wait_until
        elseif -wait_until > now then
            return 0
        end
        local idle = idles[sid]
        if idle and expires_at then
            local due = expires_at - idle + interval_for(rf, idle)
            if due > now then
                memo[sid] = due
                return due
            end
        end
    end
    maybe_start(rf, ks, sid)
    wait_until = memo[sid] or 0
    return wait_until > 0 and wait_until or 0
end


return _M
