-- resty.shared_session.subscriber: the revocation subscriber (PROTOCOL.md
-- section 7).
--
-- One timer in worker 0 holds a dedicated connection SUBSCRIBEd to
-- <prefix>:invalidate. Each notice makes the session's cached decisions stop
-- counting at once (decisions.forget). A new epoch is opened at every
-- successful SUBSCRIBE (notices may have been missed before it) and renewed,
-- with a HEARTBEAT_TTL expiry, whenever Redis answers; it is closed as soon
-- as the connection fails. Without it the cache is bypassed.
--
-- The connection is a bare cosocket speaking RESP, not a resty.redis object:
-- a light thread PINGs every PING_INTERVAL while the timer's thread reads, so
-- that a read never waits for long on a healthy connection (a cosocket read
-- timeout is an error line in nginx's log) and a silent hang is noticed after
-- SUBSCRIBER_READ_TIMEOUT. resty.redis cannot send without reading.

local cookie = require "resty.shared_session.cookie"
local control = require "resty.shared_session.control"
local decisions = require "resty.shared_session.decisions"
local redis = require "resty.shared_session.redis"
local resp = require "resty.shared_session.resp"

local ngx = ngx
local ngx_log = ngx.log
local ngx_sleep = ngx.sleep
local timer_at = ngx.timer.at
local socket_tcp = ngx.socket.tcp
local thread_spawn = ngx.thread.spawn
local thread_kill = ngx.thread.kill
local worker_id = ngx.worker.id
local worker_exiting = ngx.worker.exiting
local ERR = ngx.ERR
local WARN = ngx.WARN
local NOTICE = ngx.NOTICE

local type = type
local pcall = pcall
local tostring = tostring
local math_min = math.min

local is_sid = cookie.is_sid
local is_control_notice = control.is_notice
local apply_control_notice = control.apply
local forget_session = decisions.forget
local forget_all = decisions.forget_all
local open_epoch = decisions.open
local renew_epoch = decisions.heartbeat
local close_epoch = decisions.close
local forget_master = redis.forget_master
local redis_address = redis.address
local connect_to = redis.connect_to
local start_tls = redis.start_tls
local redis_auth_args = redis.auth_args
local resp_command = resp.command
local read_resp = resp.read
local call = resp.call


local _M = { _VERSION = "0.1.0" }


local PING_INTERVAL = 0.25         -- s between PINGs on the subscription
local SUBSCRIBER_READ_TIMEOUT = 750 -- ms without any reply (3 PINGs): down
local HEARTBEAT_TTL = 1             -- s the epoch key outlives the last reply
local BACKOFF_MIN = 0.1             -- s before the first reconnection
local BACKOFF_MAX = 2               -- s between reconnections, at most
local SLEEP_SLICE = 0.1             -- s: exiting() is checked this often

local PING = resp_command("PING")


-- Logs only the changes between up and down, not every retry.
local function subscriber_state(state, dc, up, why)
    if state.up == up then
        return
    end
    state.up = up
    if up then
        ngx_log(NOTICE, "shared_session: revocation subscriber up on ",
                dc.channel, "; decision cache in use")
    else
        ngx_log(ERR, "shared_session: revocation subscriber down (", why,
                "); decision cache bypassed until it is back")
    end
end


-- Applies one reply (a notice, or a PONG) to the cache. A notice of a kind
-- it does not know drops every decision; section 13's "!" notices are
-- control.lua's. `r`: the Redis options (for acknowledgements).
local function apply_reply(dc, live, res, r)
    if type(res) ~= "table" or res[1] ~= "message" then
        return          -- a PONG
    end
    local sid = res[3]
    if is_sid(sid) then
        forget_session(dc, sid, live)
        return
    end
    -- PROTOCOL.md section 13.4: "!<kind> ..." (mark, generation, ack); an
    -- unknown kind is ignored, not a reason to drop every decision.
    if is_control_notice(sid) then
        apply_control_notice(dc, sid, r)
        return
    end
    -- Not a session id: which decisions it meant is unknown, so all go.
    ngx_log(WARN, "shared_session: notice on ", dc.channel, " is not a",
            " session id; every cached decision dropped")
    forget_all(dc, live)
end


-- The light thread that keeps replies coming. When the worker exits it
-- UNSUBSCRIBEs, whose reply wakes the reader up to notice.
local function ping(sock)
    while true do
        ngx_sleep(PING_INTERVAL)
        if worker_exiting() then
            sock:send(resp_command("UNSUBSCRIBE"))
            return
        end
        if not sock:send(PING) then
            return      -- the reader sees the failure too
        end
    end
end


-- One subscription, from connecting to its end. Returns the reason it ended,
-- or nil when the worker is exiting.
local function subscription(dc, r, state)
    -- With Sentinel, always the primary as the sentinels name it now.
    forget_master()
    local host, port = redis_address(r)
    if not host then
        return port
    end
    local sock = socket_tcp()
    sock:settimeouts(r.connect_timeout, r.read_timeout, r.read_timeout)
    local ok, err = connect_to(sock, host, port, dc.subscriber_connect_options)
    if not ok then
        return "connect: " .. tostring(err)
    end
    if r.ssl then
        ok, err = start_tls(sock, r)
        if not ok then
            return err
        end
    end

    local res
    if r.password then
        res, err = call(sock, "AUTH", redis_auth_args(r))
        if res ~= "OK" then
            sock:close()
            return "auth: " .. tostring(err)
        end
    end
    -- (No SELECT: channels are the same in every database.)
    res, err = call(sock, "SUBSCRIBE", dc.channel)
    if type(res) ~= "table" or res[1] ~= "subscribe" then
        sock:close()
        return "subscribe: " .. tostring(err or "unexpected reply")
    end

    local live = open_epoch(dc, HEARTBEAT_TTL)
    subscriber_state(state, dc, true)
    state.backoff = BACKOFF_MIN

    sock:settimeouts(r.connect_timeout, r.read_timeout,
                     SUBSCRIBER_READ_TIMEOUT)
    local pinger = thread_spawn(ping, sock)
    while not worker_exiting() do
        res, err = read_resp(sock)
        if not res then
            err = res == false and "redis error: " .. tostring(err) or err
            break
        end
        if not pcall(apply_reply, dc, live, res, r) then
            -- A notice that could not be applied: drop every decision.
            forget_all(dc, live)
        end
        renew_epoch(dc, live)
    end

    close_epoch(dc)
    thread_kill(pinger)
    sock:close()
    if worker_exiting() then
        return nil
    end
    return tostring(err or "closed")
end


local function sleep_unless_exiting(seconds)
    while seconds > 0 and not worker_exiting() do
        ngx_sleep(math_min(seconds, SLEEP_SLICE))
        seconds = seconds - SLEEP_SLICE
    end
end


local function run(premature, dc, r)
    if premature then
        return
    end
    local state = { up = nil, backoff = BACKOFF_MIN }  -- up: nil = not yet
    while not worker_exiting() do
        local ok, why = pcall(subscription, dc, r, state)
        if not ok then
            -- A bug, not Redis: keep the cache bypassed and go on.
            close_epoch(dc)
            why = "error: " .. tostring(why)
        end
        if why == nil then
            break
        end
        subscriber_state(state, dc, false, why)
        sleep_unless_exiting(state.backoff)
        state.backoff = math_min(state.backoff * 2, BACKOFF_MAX)
    end
end


-- From init_worker_by_lua, with the configuration in force (nil when
-- configure() was not called): starts the subscriber in worker 0 (again in a
-- worker restarted as 0). true where it started, false in the other workers,
-- nil and an error without configure{ decision_cache = ... }.
function _M.start(conf)
    local dc = conf and conf.decision_cache
    if not dc then
        ngx_log(WARN, "shared_session: start_subscriber() without"
                      .. " configure{ decision_cache = ... }: nothing to do")
        return nil, "no decision_cache configured"
    end
    if worker_id() ~= 0 then
        return false
    end
    local ok, err = timer_at(0, run, dc, conf.redis)
    if not ok then
        ngx_log(ERR, "shared_session: revocation subscriber not started: ",
                err)
        return nil, "timer: " .. tostring(err)
    end
    return true
end


return _M
