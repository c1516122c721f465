-- resty.shared_session: the nginx side of the shared-session protocol (v1).
--
-- Reads the session cookie that a Flask (flask-resty-shared-session) or NestJS
-- application signed, checks its signature (locally with the shared secret, or
-- against the copy the application stored in Redis), and asks Redis whether the
-- session belongs to a group. The byte formats are those of PROTOCOL.md; the
-- README documents every option.
--
-- This file is the public face; the work is done in resty/shared_session/:
-- cookie (format, signature), session_id (timed ids), refresh (activity
-- at nginx keeps a session alive), config (options),
-- layout/ (the key layouts: key names and the queries on them), topology/
-- (one Redis, Sentinel, Cluster: how a connection is had), redis (the
-- Redis operations, the same on each), decisions (the decision cache),
-- subscriber and resp (revocation notices), control (the not-before mark and
-- group cache generations), compat (the 0.1.x session API), log (what a log
-- line may say), var (reads of nginx variables that LuaJIT compiles),
-- reasons (a refusal's reason in one word, for the person refused),
-- metrics (counts per worker, added to a dict; the Prometheus text),
-- health (Redis and the subscriber, for a readiness probe), audit (a JSON
-- line per refusal).

local cookie = require "resty.shared_session.cookie"
local config_lib = require "resty.shared_session.config"
local control = require "resty.shared_session.control"
local decisions = require "resty.shared_session.decisions"
local session_id = require "resty.shared_session.session_id"
local refresh = require "resty.shared_session.refresh"
local subscriber = require "resty.shared_session.subscriber"
local compat = require "resty.shared_session.compat"
local log = require "resty.shared_session.log"
local var = require "resty.shared_session.var"
local reasons = require "resty.shared_session.reasons"
local metrics = require "resty.shared_session.metrics"
local health = require "resty.shared_session.health"
local audit = require "resty.shared_session.audit"

local ngx = ngx
local ngx_log = ngx.log
local ngx_exit = ngx.exit
local ngx_null = ngx.null
local ngx_now = ngx.now
local ngx_var = ngx.var
local pcall = pcall
local ERR = ngx.ERR
local WARN = ngx.WARN
local INFO = ngx.INFO

local type = type
local error = error

local cookie_from_header = cookie.from_header
local parse_cookie = cookie.parse
local verify_locally = cookie.verify
local equals_constant_time = cookie.equals_constant_time
local new_config = config_lib.new
local control_known = control.known
local control_remember = control.remember
local refused_by_mark = control.refuses
local set_generation = control.set_generation
local known_decision = decisions.known
local known_by_header = decisions.known_header
local decision_hit = decisions.hit
local cached_decision = decisions.cached
local store_decision = decisions.store
local entry_sid = decisions.entry_sid
local entry_fresh = decisions.entry_fresh
local set_entry_fresh = decisions.set_entry_fresh
local sid_ended = session_id.ended
local refresh_maybe = refresh.maybe
local start_subscriber = subscriber.start
local session_hint = log.session_hint
local group_hint = log.group_hint
local request_reader = var.request_reader
local current_request = var.request
local reason_of = reasons.of
local audit_refused = audit.refused
local audit_allowed = audit.allowed
local ALLOWED = metrics.ALLOWED
local UNAVAILABLE = metrics.UNAVAILABLE
local REFUSED = metrics.REFUSED
local WORKER_HIT = metrics.WORKER_HIT
local DICT_HIT = metrics.DICT_HIT
local MISS = metrics.MISS
local read_cookie_header = request_reader("http_cookie")


local _M = { _VERSION = "0.1.0" }

-- Sessions of the 0.1.x API have this module's functions as methods.
local mt = { __index = _M }

_M.parse_cookie = parse_cookie
_M.equals_constant_time = equals_constant_time


-- The configuration set once by configure() (in init_by_lua, before the
-- workers fork); never written by a request.
local config

-- The named checks (configure{ checks = ... }), made into functions once
-- per worker: name -> function; emptied by configure().
local prepared = {}


-- Checks every option, derives the HMAC keys once, and only then replaces
-- the configuration: a failed call raises, naming the option, and leaves the
-- previous one in force.
function _M.configure(opts)
    local conf, err = new_config(opts)
    if not conf then
        error(err, 0)
    end
    config = conf
    prepared = {}
    log.use_event_key(conf.event_key)
    return true
end


-- nginx's error_log level, read once per worker: a refusal's line is built
-- (and its event id computed) only when it would be written.
local logged = log.logged


-- A refusal: counted, audited and logged (each when configured), and
-- returned.
local function refuse(status, level, reason, sid, group_id)
    local conf = config
    local m = conf and conf.metrics
    local a = conf and conf.audit
    if m or a then
        local word = reason_of(status, reason)
        if m then
            local c = m.counts
            local i = status == 503 and UNAVAILABLE or REFUSED[word]
            c[i] = c[i] + 1
        end
        if a then
            audit_refused(a, status, word, sid, reason == "no session cookie")
        end
    end
    if logged(level) then
        ngx_log(level, "shared_session: ", status, " ", reason, " (session ",
                session_hint(sid), ", group ", group_hint(group_id), ")")
    end
    return status, reason
end


-- Counts one decision-cache outcome (when metrics are on).
local function tally(conf, i)
    local m = conf.metrics
    if m then
        local c = m.counts
        c[i] = c[i] + 1
    end
end


-- An allowed request: 200, after setting the generation variable when one
-- is named (section 13.3), and 503 when it cannot be set (not declared in
-- the location); and the session kept alive (PROTOCOL.md section 12: a
-- refresh when one is due, in a timer, so it neither delays nor changes the
-- answer).
-- `entry`: this worker's decision entry for the cookie, when the answer
-- came from it (then `sid` is nil: read from the entry only when needed,
-- as a hit reads no more of the entry than it must); it remembers until
-- when the session needs no refresh, so that a hit asks refresh.lua
-- nothing. `expires_at`: the session's expiry when Redis was just asked
-- (nil otherwise).
local function allow(conf, sid, group_id, generation_var, generation, entry,
                     expires_at)
    if not set_generation(generation_var, generation) then
        return refuse(503, ERR, "variable $" .. generation_var
                      .. " not declared (set $" .. generation_var
                      .. " \"\"; in the location)",
                      sid or entry_sid(entry), group_id)
    end
    local rf = conf.refresh
    if rf and not (entry and entry_fresh(entry) > ngx_now()) then
        local fresh = refresh_maybe(rf, conf.keyspace,
                                    sid or entry_sid(entry), expires_at)
        if entry then
            set_entry_fresh(entry, fresh)
        end
    end
    tally(conf, ALLOWED)
    local a = conf.audit
    if a then
        audit_allowed(a, sid or (entry and entry_sid(entry)))
    end
    return 200
end


-- The answer of this worker's decision entry (decisions.known): `known`
-- true (allowed) or false (not a member), under the not-before `mark`.
local function answer_from_entry(conf, known, entry, mark, group_id,
                                 generation_var, generation)
    tally(conf, WORKER_HIT)
    if mark ~= 0 and refused_by_mark(entry_sid(entry), mark) then
        return refuse(403, INFO, "session issued before the not-before mark",
                      entry_sid(entry), group_id)
    end
    if known then
        return allow(conf, nil, group_id, generation_var, generation, entry)
    end
    return refuse(403, INFO, "not a member of the group", entry_sid(entry),
                  group_id)
end


-- The one-call check (PROTOCOL.md section 5). Returns 200 when the request's
-- session is a member of group_id, else 401 (no cookie), 403 (malformed,
-- forged, not a member, expired, past its deadline, issued before the
-- not-before mark, or destroyed) or 503 (Redis unreachable or failing), and
-- a short reason. With `generation_var` (a variable's name), sets it to the
-- group's cache generation (section 13.3) for the operator's cache key.
--
-- Also `authorize{ group = <id> | group_var = <name>, generation_var =
-- <name> }`: `group_var` names the variable that holds the group id (read
-- here, through a reader LuaJIT compiles: var.lua).
local decide

function _M.authorize(group_id, generation_var)
    local conf = config
    if not conf then
        return refuse(503, ERR, "configure() was not called")
    end
    if type(group_id) == "table" then
        local opts = group_id
        generation_var = opts.generation_var
        local name = opts.group_var
        if name == nil then
            group_id = opts.group
        elseif type(name) == "string" and name ~= "" then
            group_id = request_reader(name)(current_request())
        else
            return refuse(503, ERR, "group_var must be a variable's name")
        end
    end
    local status, reason = decide(conf, current_request(), group_id,
                                  generation_var)
    return status, reason
end


-- authorize() once the group id is known (conf: the configuration; r: the
-- request, from var.request(), whose variables can be read).
function decide(conf, r, group_id, generation_var)
    if (type(group_id) ~= "string" and type(group_id) ~= "number")
       or group_id == ""
    then
        return refuse(403, WARN, "no group id given")
    end

    -- Every Cookie line, joined with "; ": read by PROTOCOL.md section 10,
    -- exactly as the application reads it (not $cookie_<name>).
    local header = read_cookie_header(r)

    -- This worker's decisions first, by the Cookie header when it is the
    -- one the entry was last found under (decisions.known_header: nothing
    -- parsed; equal headers hold the same cookie).
    local dc = conf.decision_cache
    local with_generation = generation_var ~= nil
    if dc and header then
        local known, found, mark, generation = known_by_header(dc, header,
            group_id, with_generation)
        if known ~= nil then
            return answer_from_entry(conf, known, found, mark, group_id,
                                     generation_var, generation)
        end
    end

    local cookie_value, refused = cookie_from_header(header, conf.cookie_name)
    if cookie_value == nil then
        if refused then
            return refuse(403, WARN, "malformed cookie: " .. refused, nil,
                          group_id)
        end
        return refuse(401, INFO, "no session cookie", nil, group_id)
    end

    -- A timed id past its deadline (section 11) has ended, whatever Redis or
    -- the decision caches say. Read from the cookie value before its
    -- signature is checked: this can only refuse.
    if sid_ended(cookie_value, ngx_now() * 1000) then
        return refuse(403, INFO, "session past its deadline", nil, group_id)
    end

    -- This worker's decisions first (keyed by the exact cookie, so by the
    -- signature verified when they were made): no parsing, no HMAC, and
    -- one dict read (decisions.known: the entry carries the epoch, the
    -- not-before mark and the group's generation it was made under, which
    -- the revocation count covers).
    if dc then
        local known, entry, mark, generation = known_decision(dc,
            cookie_value, group_id, with_generation, header)
        if known ~= nil then
            return answer_from_entry(conf, known, entry, mark, group_id,
                                     generation_var, generation)
        end
    end

    -- Section 13: the not-before mark and the group's generation as the
    -- subscriber keeps them (mark nil when not known under its live epoch:
    -- then they come with the Redis query below, and no cached decision is
    -- used).
    local epoch, mark, generation, count
    if dc then
        epoch, mark, generation, count = control_known(dc, group_id,
                                                       generation_var)
    end

    local sid, sig = parse_cookie(cookie_value)
    if not sid then
        return refuse(403, WARN, "malformed cookie: " .. sig, nil, group_id)
    end
    if mark and refused_by_mark(sid, mark) then
        return refuse(403, INFO, "session issued before the not-before mark",
                      sid, group_id)
    end

    -- The shared dict: a decision bound to the exact signature verified when
    -- it was made (by HMAC, or against Redis in stored mode): no HMAC.
    if mark and decision_hit(dc, cookie_value, sid, sig, group_id, mark,
                             generation, count)
    then
        tally(conf, DICT_HIT)
        return allow(conf, sid, group_id, generation_var, generation)
    end

    local keys = conf.keys
    if keys and not verify_locally(keys, sid, sig) then
        return refuse(403, WARN, "bad signature", sid, group_id)
    end

    local ticket    -- what the answer is stored under; nil: store nothing
    if dc then
        local hit
        hit, ticket = cached_decision(dc, cookie_value, sid, sig, group_id,
                                      mark, generation, count)
        if hit and mark then
            tally(conf, DICT_HIT)
            return allow(conf, sid, group_id, generation_var, generation)
        end
        tally(conf, MISS)
    end

    -- Stored mode (no keys) also fetches the signature, and section 13 the
    -- mark and the generation, all in the same round trip where the
    -- topology allows (on a cluster, where they are in other slots, those
    -- not kept under the epoch each with a GET on its own primary:
    -- PROTOCOL.md sections 14.2 and 14.3): the layout's lookup.
    local member, err, stored, left
    member, err, stored, mark, generation, left = conf.keyspace:lookup(sid,
        group_id, not keys, with_generation, mark, generation)
    if err then
        return refuse(503, ERR, err, sid, group_id)
    end
    local expires_at
    if left then
        -- PROTOCOL.md section 12: no decision outlives the session's keys as
        -- read with it, counted from when the query was sent (never later
        -- than Redis read them). nil: no expiry, no bound from the session.
        expires_at = (ticket and ticket.started or ngx_now()) + left / 1000
        if ticket then
            ticket.expires_at = expires_at
        end
    end
    if epoch then
        control_remember(dc, epoch, group_id, mark, generation)
    end
    if not keys then
        if stored == ngx_null then
            if ticket then
                store_decision(dc, ticket, false, mark, generation)
            end
            return refuse(403, INFO, "no stored signature (expired or"
                                     .. " destroyed)", sid, group_id)
        end
        if type(stored) ~= "string" or not equals_constant_time(sig, stored)
        then
            return refuse(403, WARN, "bad signature", sid, group_id)
        end
    end

    if refused_by_mark(sid, mark) then
        return refuse(403, INFO, "session issued before the not-before mark",
                      sid, group_id)
    end

    if ticket and (member == 1 or member == 0) then
        store_decision(dc, ticket, member == 1, mark, generation)
    end
    if member == 1 then
        return allow(conf, sid, group_id, generation_var, generation, nil,
                     expires_at)
    end
    if member == 0 then
        return refuse(403, INFO, "not a member of the group", sid, group_id)
    end
    return refuse(503, ERR, "unexpected redis reply to SISMEMBER", sid,
                  group_id)
end


-- Sets the variable `name` to the refusal's word (reasons.lua), for the
-- operator's error page; off the allowed path.
local function set_reason(name, status, reason)
    local ok, err = pcall(function()
        ngx_var[name] = reasons.of(status, reason)
    end)
    if not ok then
        ngx_log(ERR, "shared_session: reason_var $", name, " not set (set $",
                name, " \"\"; in the location): ", err)
    end
end


-- For access_by_lua: ends the request with the status unless it is 200.
-- Takes what authorize takes (the table form too), and in the table form
-- `reason_var`: a variable set, on a refusal, to its reason in one word
-- (reasons.lua), which an error_page location can show.
function _M.access(group_id, generation_var)
    local status, reason = _M.authorize(group_id, generation_var)
    if status ~= 200 then
        local name = type(group_id) == "table" and group_id.reason_var
        if name then
            set_reason(name, status, reason)
        end
        return ngx_exit(status)
    end
    return status
end


local function prepare(name)
    local c = config and config.checks and config.checks[name]
    if not c then
        return function()
            refuse(503, ERR, "no check named \"" .. group_hint(name)
                   .. "\" (configure{ checks = { ... } })")
            return ngx_exit(503)
        end
    end
    local group, generation_var, reason_var = c.group, c.generation_var,
                                              c.reason_var
    local read_group = c.group_var and request_reader(c.group_var)
    return function()
        local conf = config
        local status, reason
        if not conf then
            status, reason = refuse(503, ERR, "configure() was not called")
        else
            local r = current_request()
            status, reason = decide(conf, r, read_group and read_group(r)
                                    or group, generation_var)
        end
        if status ~= 200 then
            if reason_var then
                set_reason(reason_var, status, reason)
            end
            return ngx_exit(status)
        end
        return status
    end
end


-- For access_by_lua: access() with the options of the check configured
-- under `name` (configure{ checks = { [name] = { group_var = ..., ... } } }):
-- the same answers, without a table of options built and read per request.
-- 503 when no check has that name.
function _M.check(name)
    local f = prepared[name]
    if not f then
        f = prepare(name)
        prepared[name] = f
    end
    return f()
end


-- From init_worker_by_lua: the revocation subscriber, in worker 0; and
-- this worker's metrics timer, when metrics are configured.
function _M.start_subscriber()
    _M.start_metrics()
    return start_subscriber(config)
end


-- From init_worker_by_lua, without a subscriber: this worker's metrics
-- timer (it adds the worker's counts to the metrics dict). true; false when
-- no metrics are configured; nil and an error when no timer could start.
function _M.start_metrics()
    local m = config and config.metrics
    if not m then
        return false
    end
    return metrics.start(m)
end


-- For a content handler: the metrics in the Prometheus text format (an
-- empty body when none are configured).
function _M.serve_metrics()
    local m = config and config.metrics
    if not m then
        ngx.status = 404
        ngx.say("no metrics configured (configure{ metrics = { dict = ...",
                " } })")
        return nil, "no metrics configured"
    end
    return metrics.serve(m)
end


-- The same figures as a Lua list (metrics.lua: { name, type, help, labels,
-- value } or, for a histogram, buckets, sum and count), for another
-- exporter (nginx-lua-prometheus, Kong, APISIX); nil and an error when no
-- metrics are configured.
function _M.figures()
    local m = config and config.metrics
    if not m then
        return nil, "no metrics configured"
    end
    return metrics.figures(m)
end


-- Redis reachable (a PING through the configured topology) and the
-- subscriber subscribed: true or false, and the details (health.lua).
function _M.check_health()
    return health.check(config)
end


-- For a content handler: 200 or 503 and a small JSON body (README,
-- "Operations").
function _M.health()
    return health.serve(config)
end


-- The 0.1.x API (flask-resty-shared-session 2017) -----------------------------

function _M.new(_, redis_conn, cookie_name, key_prefix)
    return compat.new(config, mt, redis_conn, cookie_name, key_prefix)
end

function _M.verify_signature(self)
    return compat.verify_signature(self, config)
end

_M.is_group_member = compat.is_group_member
_M.list_groups = compat.list_groups
_M.get_sid = compat.get_sid
_M.get_data = compat.get_data
_M.get_cookie_signature = compat.get_cookie_signature
_M.get_cookie_raw = compat.get_cookie_raw

-- Names kept from 0.1.x.
_M.get_cookie_sid = _M.get_sid
_M.list_allowed_groups = _M.list_groups


return _M
