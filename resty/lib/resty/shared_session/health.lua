-- resty.shared_session.health: whether this nginx can decide, for a
-- readiness probe: Redis reachable (a PING through the configured topology,
-- with the configured timeouts: one server, the Sentinel primary, or a
-- cluster's primary) and, with a decision cache, the revocation subscriber
-- subscribed (its epoch is in the dict only while it is), since when.

local redis = require "resty.shared_session.redis"
local decisions = require "resty.shared_session.decisions"

local ngx = ngx
local floor = math.floor
local tostring = tostring

local on_primary = redis.on_primary
local EPOCH_KEY = decisions.EPOCH_KEY


local _M = {
    _VERSION = "0.1.0",
    -- In the decision cache's dict: when the subscriber last subscribed
    -- (unix s), written by the worker that runs it.
    SINCE_KEY = "subscribed_at",
}

local SINCE_KEY = _M.SINCE_KEY


local function ping(red)
    return red:ping()
end
redis.name_query(ping, "ping")


-- true or false, and { redis = { ok }, subscriber = { subscribed, since } }
-- (subscriber nil without a decision cache: nothing to subscribe).
function _M.check(conf)
    if not conf then
        return false, { redis = { ok = false, error = "not configured" } }
    end
    local ok, err = on_primary(conf.redis, conf.key_prefix, ping)
    local res = { redis = { ok = ok == "PONG", error = err } }
    local healthy = res.redis.ok
    local dc = conf.decision_cache
    if dc then
        local dict = dc.dict
        local subscribed = dict:get(EPOCH_KEY) ~= nil
        res.subscriber = { subscribed = subscribed,
                           since = subscribed and dict:get(SINCE_KEY) or nil }
        healthy = healthy and subscribed
    end
    return healthy, res
end


-- 200 or 503, and
-- {"status":"ok"|"unavailable","redis":{"ok":bool},
--  "subscriber":{"subscribed":bool,"since":<unix s>|null}}
-- (no error text: it could name a host).
function _M.serve(conf)
    local healthy, res = _M.check(conf)
    local sub = res.subscriber
    local since = sub and sub.since
    ngx.status = healthy and 200 or 503
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Cache-Control"] = "no-store"
    ngx.say('{"status":"', healthy and "ok" or "unavailable",
            '","redis":{"ok":', tostring(res.redis.ok), '},"subscriber":{',
            '"subscribed":', tostring(sub and sub.subscribed or false),
            ',"since":', since and tostring(floor(since)) or "null", "}}")
    return healthy
end


return _M
