-- resty.shared_session.metrics: what the rock counts, for whoever runs it
-- (the names are those of the README's "Operations" section).
--
-- Counts are kept per worker, in plain Lua numbers: the hot path writes no
-- shared-dict entry. A timer in each worker (start()) adds them to the
-- operator's lua_shared_dict every `interval` seconds with dict:incr(key, n,
-- 0), so that the workers' counts add up there; serve() and figures() read
-- the dict. The dict's keys are the series themselves, as the Prometheus
-- text format writes them: `name{label="value",...}`. Label values come from
-- fixed lists only (a reason, an operation, a configured Redis' host:port),
-- never from a request.
--
-- A metrics failure never fails a request: the flush and serve() run under
-- pcall, count shared_session_metrics_errors_total, and log once per worker.

local ffi = require "ffi"

local ngx = ngx
local ngx_log = ngx.log
local ngx_now = ngx.now
local ERR = ngx.ERR

local type = type
local pairs = pairs
local next = next
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local tonumber = tonumber
local error = error
local concat = table.concat
local sort = table.sort
local find = string.find
local sub = string.sub
local match = string.match
local gmatch = string.gmatch
local format = string.format
local floor = math.floor

pcall(ffi.cdef, [[
typedef struct { long tv_sec; long tv_nsec; } shared_session_timespec;
int clock_gettime(int clk_id, shared_session_timespec *tp);
]])

local CLOCK_MONOTONIC = 1
local timespec = ffi.new("shared_session_timespec")
local C = ffi.C


local _M = { _VERSION = "0.1.0" }


-- Seconds on a monotonic clock, to the nanosecond: ngx.now() moves in
-- milliseconds, and only between events, too coarse for a Redis round trip
-- on loopback.
local function clock()
    C.clock_gettime(CLOCK_MONOTONIC, timespec)
    return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end
_M.clock = clock


-- Histogram buckets (seconds): the same at both doors.
local BUCKETS = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                  0.25, 0.5, 1, 2.5 }
local NBUCKETS = #BUCKETS
_M.BUCKETS = BUCKETS


-- The metric families, in the order serve() writes them.
local FAMILIES = {
    { "shared_session_decisions_total", "counter",
      "Access decisions by result and reason (PROTOCOL.md 16.3)." },
    { "shared_session_decision_cache_total", "counter",
      "Decisions answered by the worker cache, the shared dict, or a miss"
      .. " (Redis asked)." },
    { "shared_session_redis_seconds", "histogram",
      "Redis round trips by operation." },
    { "shared_session_redis_errors_total", "counter",
      "Redis errors by operation and kind." },
    { "shared_session_notices_applied_total", "counter",
      "Revocation and control notices applied by the subscriber." },
    { "shared_session_notice_apply_seconds", "histogram",
      "From the subscriber reading a notice to its decisions being dropped." },
    { "shared_session_refreshes_total", "counter",
      "Session refreshes sent (answered), failed, or skipped (queue full)." },
    { "shared_session_subscriber_connected", "gauge",
      "1 while the revocation subscriber is subscribed at this primary." },
    { "shared_session_subscriber_reconnects_total", "counter",
      "Subscriptions made again after the first." },
    { "shared_session_subscriber_lapses_total", "counter",
      "Silences of the subscription long enough for the decision cache to be"
      .. " bypassed until Redis answers, the connection kept." },
    { "shared_session_subscriber_since_seconds", "gauge",
      "Unix time the subscriber last subscribed." },
    { "shared_session_dict_free_bytes", "gauge",
      "Free bytes of the rock's lua_shared_dicts (dict:free_space())." },
    { "shared_session_metrics_errors_total", "counter",
      "Metrics failures (a flush or a scrape); never a failed request." },
}
local FAMILY = {}
for i, f in ipairs(FAMILIES) do
    FAMILY[f[1]] = { name = f[1], type = f[2], help = f[3], order = i }
end


-- The counters of fixed labels, by index: the hot path adds to
-- counts[index], an array of numbers.
local COUNTERS = {}
local function counter(name, labels)
    COUNTERS[#COUNTERS + 1] = labels and name .. "{" .. labels .. "}" or name
    return #COUNTERS
end

local DECISION = "shared_session_decisions_total"
_M.ALLOWED = counter(DECISION, 'result="allowed",reason="none"')
_M.UNAVAILABLE = counter(DECISION, 'result="unavailable",reason="unavailable"')
-- refused, by the reason's word (reasons.lua)
_M.REFUSED = {}
for _, word in ipairs { "no_session", "two_sessions", "session_ended",
                        "not_member" } do
    _M.REFUSED[word] = counter(DECISION, 'result="refused",reason="'
                                         .. word .. '"')
end

local CACHE = "shared_session_decision_cache_total"
_M.WORKER_HIT = counter(CACHE, 'result="worker_hit"')
_M.DICT_HIT = counter(CACHE, 'result="dict_hit"')
_M.MISS = counter(CACHE, 'result="miss"')

local REFRESHES = "shared_session_refreshes_total"
_M.REFRESH_SENT = counter(REFRESHES, 'result="sent"')
_M.REFRESH_FAILED = counter(REFRESHES, 'result="failed"')
_M.REFRESH_SKIPPED = counter(REFRESHES, 'result="skipped"')

_M.NOTICES = counter("shared_session_notices_applied_total")
_M.RECONNECTS = counter("shared_session_subscriber_reconnects_total")
_M.LAPSES = counter("shared_session_subscriber_lapses_total")
_M.ERRORS = counter("shared_session_metrics_errors_total")

local NCOUNTERS = #COUNTERS

local REDIS_SECONDS = "shared_session_redis_seconds"
local NOTICE_SECONDS = "shared_session_notice_apply_seconds"
local REDIS_ERRORS = "shared_session_redis_errors_total"
local CONNECTED = "shared_session_subscriber_connected"
local SINCE = "shared_session_subscriber_since_seconds"
local FREE = "shared_session_dict_free_bytes"

-- The Redis operations (label `op`) and error kinds (label `kind`).
local OPS = { check = true, get = true, refresh = true, index = true,
              subscribe = true, ack = true, ping = true }
local KINDS = { timeout = true, connection = true, reply = true, other = true }


local DEFAULTS = {
    dict = false,       -- required: a lua_shared_dict of its own
    interval = 1,       -- s between a worker's flushes
}


-- The metrics part of the configuration, from configure()'s `metrics`
-- option: nil when absent. `check`: config.lua's option checks (raise).
-- `dicts`: { name = dict } of the rock's other dicts, for their free bytes.
function _M.new(opts, check, dicts)
    if opts == nil or opts == false then
        return nil
    end
    local o = check.options("metrics", opts, DEFAULTS)
    check.string("metrics.dict", o.dict)
    local shared = ngx.shared
    local dict = shared and shared[o.dict]
    if not dict then
        check.error("metrics.dict", "must name a lua_shared_dict")
    end
    local interval = check.number("metrics.interval", o.interval, 0.001,
                                  false, 1, "1 (second)")

    local counts = {}
    for i = 1, NCOUNTERS do
        counts[i] = 0
    end
    local all = { [o.dict] = dict }
    for name, d in pairs(dicts or {}) do
        all[name] = d
    end
    return {
        dict = dict,
        dicts = all,
        interval = interval,
        counts = counts,        -- this worker's, not yet in the dict
        histograms = {},        -- series' labels -> { buckets..., sum, n }
        errors = {},            -- series -> count (Redis errors)
        failed = false,         -- a failure was logged in this worker
    }
end


-- A metrics failure: counted, and logged once per worker.
local function failure(m, what, err)
    local c = m.counts
    c[_M.ERRORS] = c[_M.ERRORS] + 1
    if not m.failed then
        m.failed = true
        ngx_log(ERR, "shared_session: metrics ", what, " failed (logged once",
                " per worker, counted in shared_session_metrics_errors_total",
                "): ", tostring(err))
    end
end


-- One observation (seconds) into the histogram `family` of `labels` (a
-- label list, '' for none).
local function observe(m, family, labels, seconds)
    local series = family .. (labels == "" and "{" or "{" .. labels .. ",")
    local h = m.histograms[series]
    if not h then
        h = { family = family, labels = labels, sum = 0, n = 0 }
        for i = 1, NBUCKETS do
            h[i] = 0
        end
        m.histograms[series] = h
    end
    for i = 1, NBUCKETS do
        if seconds <= BUCKETS[i] then
            h[i] = h[i] + 1
            break
        end
    end
    h.sum = h.sum + seconds
    h.n = h.n + 1
end


-- A Redis round trip of operation `op` that took `seconds`.
function _M.redis_time(m, op, seconds)
    observe(m, REDIS_SECONDS, 'op="' .. op .. '"', seconds)
end


-- The kind of a Redis error, from its message: the socket's ("timeout",
-- "closed", "connection refused"...), or an error reply ("ERR ...",
-- "NOAUTH ...", a word in capitals first).
local function error_kind(err)
    err = tostring(err)
    if find(err, "timeout", 1, true) then
        return "timeout"
    end
    if find(err, "closed", 1, true) or find(err, "refused", 1, true)
       or find(err, "reset", 1, true) or find(err, "connect", 1, true)
       or find(err, "broken pipe", 1, true) or find(err, "tls", 1, true)
       or find(err, "no resolver", 1, true) or find(err, "unreachable", 1, true)
    then
        return "connection"
    end
    local word = match(err, "^redis error: (%u+)")
                 or match(err, "^(%u+)[ %c]") or match(err, "^%a+: (%u+) ")
    if word then
        return "reply"
    end
    return "other"
end
_M.error_kind = error_kind


-- A Redis error of operation `op` (its message: the kind is read from it).
function _M.redis_error(m, op, err)
    local kind = error_kind(err)
    if not OPS[op] or not KINDS[kind] then
        return
    end
    local series = REDIS_ERRORS .. '{op="' .. op .. '",kind="' .. kind .. '"}'
    local errors = m.errors
    errors[series] = (errors[series] or 0) + 1
end


-- The subscriber applied a notice, read `seconds` ago.
function _M.notice_applied(m, seconds)
    local c = m.counts
    c[_M.NOTICES] = c[_M.NOTICES] + 1
    observe(m, NOTICE_SECONDS, "", seconds)
end


-- The subscriber's epoch lapsed in a silence (the connection kept).
function _M.subscriber_lapse(m)
    local c = m.counts
    c[_M.LAPSES] = c[_M.LAPSES] + 1
end


-- The subscriber's state at `primaries` (a list of "host:port"): connected
-- or not; `first`: its first subscription in this worker. Gauges, set in
-- the dict at once (by the one worker that runs the subscriber; not on a
-- request's path).
function _M.subscriber(m, primaries, connected, first)
    local ok, err = pcall(function()
        local dict = m.dict
        for _, p in ipairs(primaries) do
            dict:set(CONNECTED .. '{primary="' .. p .. '"}',
                     connected and 1 or 0)
        end
        if connected then
            dict:set(SINCE, floor(ngx_now()))
            if not first then
                local c = m.counts
                c[_M.RECONNECTS] = c[_M.RECONNECTS] + 1
            end
        end
    end)
    if not ok then
        failure(m, "gauge", err)
    end
end


local function add(dict, key, n)
    local ok, err = dict:incr(key, n, 0)
    if not ok then
        error(err, 0)
    end
end


-- Adds this worker's counts to the dict and starts them again from zero.
local function flush(m)
    local dict = m.dict
    local counts = m.counts
    for i = 1, NCOUNTERS do
        local n = counts[i]
        if n ~= 0 then
            counts[i] = 0
            add(dict, COUNTERS[i], n)
        end
    end
    local errors = m.errors
    if next(errors) then
        m.errors = {}
        for series, n in pairs(errors) do
            add(dict, series, n)
        end
    end
    local histograms = m.histograms
    for series, h in pairs(histograms) do
        local total = h.n
        if total > 0 then
            local family = h.family
            local le_head = family .. "_bucket" .. sub(series, #family + 1)
            local running = 0
            for i = 1, NBUCKETS do
                running = running + h[i]
                if running > 0 then
                    add(dict, le_head .. 'le="' .. BUCKETS[i] .. '"}',
                        running)
                end
                h[i] = 0
            end
            local labels = h.labels == "" and "" or "{" .. h.labels .. "}"
            local sum = h.sum
            h.sum, h.n = 0, 0
            add(dict, family .. "_sum" .. labels, sum)
            add(dict, family .. "_count" .. labels, total)
        end
    end
end


function _M.flush(m)
    local ok, err = pcall(flush, m)
    if not ok then
        failure(m, "flush", err)
    end
    return ok
end


-- (Also when the worker exits, premature: its last counts are not lost.)
local function on_timer(_, m)
    _M.flush(m)
end


-- From init_worker_by_lua: this worker's flush timer. true, or nil and an
-- error.
function _M.start(m)
    if m.started then
        return true
    end
    -- Every counter of fixed labels is in the dict from the start, at 0:
    -- a rate() or an alert on it has a series before the first event.
    local ok, err = pcall(function()
        for i = 1, NCOUNTERS do
            m.dict:add(COUNTERS[i], 0)
        end
    end)
    if not ok then
        failure(m, "start", err)
    end
    ok, err = ngx.timer.every(m.interval, on_timer, m)
    if not ok then
        ngx_log(ERR, "shared_session: metrics timer not started: ", err)
        return nil, "timer: " .. tostring(err)
    end
    m.started = true
    return true
end


-- The figures --------------------------------------------------------------

-- The labels of a series' text ('a="x",b="y"'), as a table.
local function parse_labels(text)
    local labels = {}
    for k, v in gmatch(text or "", '([%w_]+)="([^"]*)"') do
        labels[k] = v
    end
    return labels
end


-- Every series, as figures: a list of { name, type, help, labels, value }
-- for counters and gauges, and { name, type = "histogram", help, labels,
-- buckets = { { le, count }... } (cumulative, +Inf last), sum, count } for
-- histograms; in the order serve() writes them.
local function figures(m)
    local dict = m.dict
    local keys = dict:get_keys(0)
    local plain = {}        -- family -> list of { labels text, value }
    local hist = {}         -- family -> labels text -> { buckets = {}, ... }
    for _, key in ipairs(keys) do
        local value = dict:get(key)
        if type(value) == "number" then
            local name, labels = match(key, "^([%w_]+){(.*)}$")
            if not name then
                name = key
            end
            local family = FAMILY[name]
            if family then
                local list = plain[name]
                if not list then
                    list = {}
                    plain[name] = list
                end
                list[#list + 1] = { labels or "", value }
            else
                local base, part = match(name, "^(.-)_(%a+)$")
                family = FAMILY[base]
                if family and family.type == "histogram" then
                    local own = labels or ""
                    local le
                    if part == "bucket" then
                        own, le = match(own, '^(.-),?le="([^"]*)"$')
                    end
                    if own then
                        local by = hist[base]
                        if not by then
                            by = {}
                            hist[base] = by
                        end
                        local h = by[own]
                        if not h then
                            h = { les = {}, sum = 0, count = 0 }
                            by[own] = h
                        end
                        if le then
                            h.les[le] = value
                        elseif part == "sum" then
                            h.sum = value
                        elseif part == "count" then
                            h.count = value
                        end
                    end
                end
            end
        end
    end

    -- Computed now: the dicts' free bytes.
    local free = {}
    for name, d in pairs(m.dicts) do
        free[#free + 1] = { 'dict="' .. name .. '"', d:free_space() }
    end
    plain[FREE] = free

    local out = {}
    for _, f in ipairs(FAMILIES) do
        local name, kind, help = f[1], f[2], f[3]
        if kind == "histogram" then
            local by = hist[name]
            if by then
                local list = {}
                for labels in pairs(by) do
                    list[#list + 1] = labels
                end
                sort(list)
                for _, labels in ipairs(list) do
                    local h = by[labels]
                    local buckets, last = {}, 0
                    for i = 1, NBUCKETS do
                        local le = tostring(BUCKETS[i])
                        local n = h.les[le] or last
                        buckets[i] = { BUCKETS[i], n }
                        last = n
                    end
                    buckets[NBUCKETS + 1] = { "+Inf", h.count }
                    out[#out + 1] = { name = name, type = kind, help = help,
                                      labels = parse_labels(labels),
                                      label_text = labels,
                                      buckets = buckets, sum = h.sum,
                                      count = h.count }
                end
            end
        else
            local list = plain[name]
            if list then
                sort(list, function(a, b) return a[1] < b[1] end)
                for _, s in ipairs(list) do
                    out[#out + 1] = { name = name, type = kind, help = help,
                                      labels = parse_labels(s[1]),
                                      label_text = s[1], value = s[2] }
                end
            end
        end
    end
    return out
end


function _M.figures(m)
    local ok, res = pcall(figures, m)
    if not ok then
        failure(m, "read", res)
        return nil, tostring(res)
    end
    return res
end


-- A number as the text format writes it: integers without a dot or an
-- exponent, others to 17 significant digits.
local function number(v)
    if v == floor(v) and v > -2^53 and v < 2^53 then
        return format("%d", v)
    end
    return format("%.17g", v)
end


local function labelled(name, label_text, extra)
    if label_text == "" then
        return extra and name .. "{" .. extra .. "}" or name
    end
    return name .. "{" .. label_text .. (extra and "," .. extra or "") .. "}"
end


-- The Prometheus text format (0.0.4) of figures(): a HELP and a TYPE line
-- per family, then its series; a histogram's cumulative buckets, +Inf last,
-- then _sum and _count.
function _M.text(list)
    local out, n = {}, 0
    local last
    for _, s in ipairs(list) do
        local name = s.name
        if name ~= last then
            last = name
            n = n + 1
            out[n] = "# HELP " .. name .. " " .. s.help .. "\n# TYPE " .. name
                     .. " " .. s.type .. "\n"
        end
        local label_text = s.label_text or ""
        if s.type == "histogram" then
            for _, b in ipairs(s.buckets) do
                local le = b[1]
                n = n + 1
                out[n] = labelled(name .. "_bucket", label_text,
                                  'le="' .. (le == "+Inf" and le
                                             or tostring(le)) .. '"')
                         .. " " .. number(b[2]) .. "\n"
            end
            n = n + 1
            out[n] = labelled(name .. "_sum", label_text) .. " "
                     .. number(s.sum) .. "\n"
            n = n + 1
            out[n] = labelled(name .. "_count", label_text) .. " "
                     .. number(s.count) .. "\n"
        else
            n = n + 1
            out[n] = labelled(name, label_text) .. " " .. number(s.value)
                     .. "\n"
        end
    end
    return concat(out)
end


-- For a content handler: the figures in the text format, or a 500 (and a
-- counted, once-logged failure) when they cannot be read.
function _M.serve(m)
    local list, err = _M.figures(m)
    if not list then
        ngx.status = 500
        ngx.header["Content-Type"] = "text/plain"
        ngx.say("metrics unavailable")
        return nil, err
    end
    local ok, text = pcall(_M.text, list)
    if not ok then
        failure(m, "serve", text)
        ngx.status = 500
        ngx.say("metrics unavailable")
        return nil, text
    end
    ngx.header["Content-Type"] = "text/plain; version=0.0.4"
    ngx.print(text)
    return true
end


return _M
