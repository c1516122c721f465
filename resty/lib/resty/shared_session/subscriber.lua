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
-- A silence on a connection that stays open (a Redis BGSAVE fork, a starved
-- CPU, a stalled worker) is not the end of the subscription: the epoch
-- lapses by itself HEARTBEAT_TTL after the last reply, so every worker asks
-- Redis meanwhile, and the same epoch is published again once a PONG has
-- been read, on every connection, to a PING sent after the lapse was seen
-- (see resume()). Only SUBSCRIBER_READ_TIMEOUT without any reply ends it.
--
-- On Redis Cluster (PROTOCOL.md section 14) it holds one such connection per
-- primary of the slot map, so that a notice comes straight from the primary
-- whose script published it rather than over the cluster bus: the timer's
-- thread reads the first, a light thread each of the others. The epoch
-- opens once all are SUBSCRIBEd and closes as soon as any one fails; then
-- the map is read again (at most once per cluster.REFRESH_INTERVAL) and every
-- primary it names is subscribed to anew. Another light thread watches the
-- map for a new set of primaries. Each notice then comes once per primary:
-- session ids are forgotten at every copy (harmless), `!ack` is answered at
-- the last copy, `!generation` and `!not-before` only raise the kept value
-- (sections 14.2 and 14.3).
--
-- The connection is a bare cosocket speaking RESP, not a resty.redis object:
-- a light thread PINGs every PING_INTERVAL while the timer's thread reads, so
-- that a read never waits for long on a healthy connection (a cosocket read
-- timeout is an error line in nginx's log) and a lapse is seen within a
-- PING_INTERVAL. resty.redis cannot send without reading.

local cookie = require "resty.shared_session.cookie"
local control = require "resty.shared_session.control"
local decisions = require "resty.shared_session.decisions"
local redis = require "resty.shared_session.redis"
local cluster = require "resty.shared_session.cluster"
local resp = require "resty.shared_session.resp"
local metrics = require "resty.shared_session.metrics"
local health = require "resty.shared_session.health"

local ngx = ngx
local ngx_log = ngx.log
local ngx_sleep = ngx.sleep
local ngx_now = ngx.now
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
local ipairs = ipairs
local math_min = math.min
local floor = math.floor
local format = string.format

local is_sid = cookie.is_sid
local is_control_notice = control.is_notice
local apply_control_notice = control.apply
local forget_session = decisions.forget
local forget_all = decisions.forget_all
local open_epoch = decisions.open
local renew_epoch = decisions.heartbeat
local epoch_lapsed = decisions.lapsed
local generation_changed = decisions.generation_changed
local close_epoch = decisions.close
local connect_to = redis.connect_to
local start_tls = redis.start_tls
local redis_auth_args = redis.auth_args
local primaries = cluster.primaries
local refresh_due = cluster.refresh_due
local resp_command = resp.command
local read_resp = resp.read
local call = resp.call
local clock = metrics.clock
local notice_applied = metrics.notice_applied
local subscriber_gauges = metrics.subscriber
local subscriber_lapse = metrics.subscriber_lapse
local redis_error = metrics.redis_error
local SINCE_KEY = health.SINCE_KEY


local _M = { _VERSION = "0.1.0" }


local PING_INTERVAL = 0.25         -- s between PINGs on the subscription
local HEARTBEAT_TTL = 1             -- s the epoch key outlives the last reply
-- ms without any reply (20 PINGs): the subscription is over, and the next
-- one opens a new epoch, which ends every cached decision of every worker.
-- Not HEARTBEAT_TTL or less: a slow PONG (a BGSAVE fork, a starved CPU)
-- would then flush every cache and send every session to Redis at once
-- (16,000 of 20,000 in one bench round). A shorter silence needs no new
-- epoch: the epoch lapses meanwhile (the cache is bypassed), and comes
-- back once a PONG shows that no notice was missed (resume()).
local SUBSCRIBER_READ_TIMEOUT = 5000
local BACKOFF_MIN = 0.1             -- s before the first reconnection
local BACKOFF_MAX = 2               -- s between reconnections, at most
local SLEEP_SLICE = 0.1             -- s: exiting() is checked this often
local PRIMARIES_CHECK = 5           -- s between reads of a cluster's slot map

local PING = resp_command("PING")


-- Logs only the changes between up and down, not every retry. `where`:
-- on a cluster, the primaries subscribed to.
local function subscriber_state(state, dc, up, why, where)
    if state.up == up then
        return
    end
    state.up = up
    if up then
        ngx_log(NOTICE, "shared_session: revocation subscriber up on ",
                dc.channel, where and " at every primary (" .. where .. ")"
                or "", "; decision cache in use")
    else
        ngx_log(ERR, "shared_session: revocation subscriber down (", why,
                "); decision cache bypassed until it is back")
    end
end


-- Applies one reply (a notice, or a PONG) to the cache. A notice of a kind
-- it does not know drops every decision; section 13's "!" notices are
-- control.lua's. `r`: the topology (for acknowledgements, and whether a
-- notice comes once or once per primary).
local function apply_reply(dc, sub, res, r)
    if type(res) ~= "table" or res[1] ~= "message" then
        return          -- a PONG
    end
    local live = sub.live
    local sid = res[3]
    if is_sid(sid) then
        -- (On a cluster, at every copy: a second forget is harmless.)
        forget_session(dc, sid, live)
        return
    end
    -- PROTOCOL.md section 13.4: "!<kind> ..." (mark, generation, ack); an
    -- unknown kind is ignored, not a reason to drop every decision.
    if is_control_notice(sid) then
        -- The topology says when a copy is to be applied and whether it
        -- may only raise the kept value; the layout too (the cluster and
        -- compact layouts, sections 14.2, 14.3 and 15: on one Redis too).
        local now, greatest = r:notice_copy(sub, sid)
        -- (Under the subscription's epoch, even lapsed: published again,
        -- it must not bring back the value from before the notice.)
        if now and apply_control_notice(dc, sid, r,
                                        greatest or dc.controls_only_rise,
                                        dc.config_id .. "/" .. live.epoch)
        then
            generation_changed(dc, live)
        end
        return
    end
    -- Not a session id: which decisions it meant is unknown, so all go.
    ngx_log(WARN, "shared_session: notice on ", dc.channel, " is not a",
            " session id; every cached decision dropped")
    forget_all(dc, live)
end


-- The subscription is over (`why`), whichever connection saw it first: the
-- cache is bypassed at once. `wake`: PING the first connection, whose
-- reader (the timer's own thread) then sees it and ends the rest.
local function end_subscription(dc, sub, why, wake)
    if sub.ended then
        return
    end
    sub.ended = why
    close_epoch(dc)
    if wake then
        sub.socks[1]:send(PING)
    end
end


-- A PONG in subscribed mode (RESP2: { "pong", "" }), or outside it.
local function is_pong(res)
    return res == "PONG" or type(res) == "table" and res[1] == "pong"
end


local function silence_ms(sub)
    return floor((ngx_now() - sub.replied_at) * 1000)
end


-- true while the epoch has lapsed (decisions.lapsed: no reply renewed it for
-- HEARTBEAT_TTL). Seen first here (by a reader, or by the PINGs' thread
-- while nothing comes): what each connection must then answer before the
-- epoch is published again is a PING sent from now on (resume()).
local function lapsed(dc, r, sub)
    if sub.need then
        return true
    end
    if not epoch_lapsed(dc, sub.live) then
        return false
    end
    local need, caught = {}, {}
    for i = 1, #sub.socks do
        need[i] = sub.sent[i]
        caught[i] = false
    end
    sub.need, sub.caught, sub.behind = need, caught, #sub.socks
    ngx_log(WARN, "shared_session: revocation subscriber: no reply from",
            " Redis for ", silence_ms(sub), " ms; decision cache bypassed",
            " until it answers")
    if r.metrics then
        subscriber_lapse(r.metrics)
    end
    return true
end


-- After a lapse, connection i read reply `res`: the epoch is published
-- again (decisions made before the silence count again) only once every
-- connection has read a PONG to a PING sent after the lapse was seen. On
-- one connection Redis answers in order, so when that PONG is read every
-- notice Redis published before it ran that PING has been read and applied
-- before it: none sent during the silence is unread. A notice, or a PONG
-- to an older PING, proves nothing of the kind: more notices may be queued
-- behind it (a stalled worker reads the silence's backlog at once).
local function resume(dc, sub, i, pong)
    if not pong or sub.caught[i] or sub.pongs[i] <= sub.need[i] then
        return
    end
    sub.caught[i] = true
    sub.behind = sub.behind - 1
    if sub.behind > 0 then
        return
    end
    sub.need = nil
    local silence = silence_ms(sub)
    renew_epoch(dc, sub.live)
    sub.replied_at = ngx_now()
    ngx_log(NOTICE, "shared_session: revocation subscriber: Redis answers",
            " again after ", silence, " ms; decision cache in use")
end


-- The light thread that keeps replies coming on every connection, and sees
-- the epoch lapse while none comes. When the worker exits it UNSUBSCRIBEs,
-- whose reply wakes the readers up to notice.
local function ping(dc, r, sub)
    local socks, sent = sub.socks, sub.sent
    while true do
        ngx_sleep(PING_INTERVAL)
        if worker_exiting() then
            for i = 1, #socks do
                socks[i]:send(resp_command("UNSUBSCRIBE"))
            end
            return
        end
        if not sub.ended then
            lapsed(dc, r, sub)
        end
        for i = 1, #socks do
            -- (Counted before it is sent: a lapse seen while it is being
            -- sent does not take its PONG as a later PING's.)
            sent[i] = sent[i] + 1
            if not socks[i]:send(PING) then
                return      -- its reader sees the failure too
            end
        end
    end
end


-- Reads connection i until it fails, the subscription ends or the worker
-- exits. Any reply renews the epoch while it has not lapsed; after that only
-- resume() does. A connection silent for SUBSCRIBER_READ_TIMEOUT ends the
-- subscription.
local function read_replies(dc, r, sub, i)
    local res, err
    local m = r.metrics
    local sock = sub.socks[i]
    while not worker_exiting() do
        res, err = read_resp(sock)
        if sub.ended then
            return
        end
        if not res then
            return res == false and "redis error: " .. tostring(err) or err
        end
        -- (Before the reply is applied: once lapsed, a notice publishes
        -- neither the epoch nor the count.)
        local was_lapsed = lapsed(dc, r, sub)
        local pong = is_pong(res)
        if pong then
            sub.pongs[i] = sub.pongs[i] + 1     -- it answers PING number n
        end
        local read_at = m and type(res) == "table" and res[1] == "message"
                        and clock()
        if not pcall(apply_reply, dc, sub, res, r) then
            -- A notice that could not be applied: drop every decision.
            forget_all(dc, sub.live)
        end
        if read_at then
            notice_applied(m, clock() - read_at)
        end
        if was_lapsed then
            resume(dc, sub, i, pong)
        else
            renew_epoch(dc, sub.live)
            sub.replied_at = ngx_now()
        end
    end
end

local function read(dc, r, sub, i)
    local ok, err = pcall(read_replies, dc, r, sub, i)
    if not ok then
        -- A bug, not Redis: it ends the subscription, not only this reader.
        err = "error: " .. tostring(err)
    end
    err = tostring(err or "closed")
    end_subscription(dc, sub, sub.names and sub.names[i] .. ": " .. err
                              or err, i > 1)
end


-- On a cluster: ends the subscription when the slot map names other
-- primaries than those subscribed to (a failover, a node added or
-- removed). The map is read again every PRIMARIES_CHECK s, and looked at
-- whenever this worker's requests have refreshed it (after a MOVED).
local function watch(dc, r, sub)
    local refresh_slots = r.refresh_slots
    local cs = r.cluster_state
    local checked = ngx_now()
    while not sub.ended and not worker_exiting() do
        ngx_sleep(SLEEP_SLICE)
        if ngx_now() - checked >= PRIMARIES_CHECK and refresh_due(cs) then
            checked = ngx_now()
            refresh_slots(r)    -- a failure: the old map stays
        end
        if cs.map ~= sub.map then
            sub.map = cs.map
            local _, key = primaries(cs.map)
            if key ~= sub.primaries then
                end_subscription(dc, sub, "the cluster's primaries are now "
                                          .. key, true)
            end
        end
    end
end


-- Where to subscribe: the configured server (or the primary the sentinels
-- name now), or every primary of the cluster's slot map (read again when a
-- refresh is due). A list of { host, port, options }, and on a cluster the
-- map and the string naming its primaries; or nil and an error.
local function targets(dc, r)
    return r:subscribe_targets(dc)
end


-- A new connection to `node`, SUBSCRIBEd: the cosocket, or nil and why.
local function subscribe(dc, r, node)
    local sock = socket_tcp()
    sock:settimeouts(r.connect_timeout, r.read_timeout, r.read_timeout)
    local ok, err = connect_to(sock, node.host, node.port, node.options)
    if not ok then
        return nil, "connect: " .. tostring(err)
    end
    if r.ssl then
        ok, err = start_tls(sock, r)
        if not ok then
            return nil, err
        end
    end

    local res
    if r.password then
        res, err = call(sock, "AUTH", redis_auth_args(r))
        if res ~= "OK" then
            sock:close()
            return nil, "auth: " .. tostring(err)
        end
    end
    -- (No SELECT: channels are the same in every database.)
    res, err = call(sock, "SUBSCRIBE", dc.channel)
    if type(res) ~= "table" or res[1] ~= "subscribe" then
        sock:close()
        return nil, "subscribe: " .. tostring(err or "unexpected reply")
    end
    return sock
end


local function close_all(socks)
    for i = 1, #socks do
        socks[i]:close()
    end
end


-- One subscription, from connecting to its end: one connection, or on a
-- cluster one per primary, all SUBSCRIBEd before the epoch opens. Returns
-- the reason it ended, or nil when the worker is exiting.
local function subscription(dc, r, state)
    local nodes, map, key = targets(dc, r)
    if not nodes then
        return map
    end
    local socks, names = {}, r:node_names()
    local m = r.metrics
    local where = {}    -- "host:port" of each: metrics' label `primary`
    for i, node in ipairs(nodes) do
        local sock, err = subscribe(dc, r, node)
        where[i] = node.port and format("%s:%d", node.host, node.port)
                   or node.host
        if names then
            names[i] = format("%s:%d", node.host, node.port)
            err = err and names[i] .. ": " .. err
        end
        if not sock then
            close_all(socks)
            if m then
                redis_error(m, "subscribe", err)
            end
            return err
        end
        socks[i] = sock
    end

    local sent, pongs = {}, {}     -- PINGs sent and PONGs read, per connection
    for i = 1, #socks do
        sent[i], pongs[i] = 0, 0
    end
    local sub = { socks = socks, names = names, map = map, primaries = key,
                  copies = {}, live = open_epoch(dc, HEARTBEAT_TTL),
                  replied_at = ngx_now(), sent = sent, pongs = pongs }
    subscriber_state(state, dc, true, nil, key)
    dc.dict:set(SINCE_KEY, ngx_now())
    if m then
        subscriber_gauges(m, where, true, not state.subscribed_before)
    end
    state.subscribed_before = true
    state.backoff = BACKOFF_MIN

    for i = 1, #socks do
        socks[i]:settimeouts(r.connect_timeout, r.read_timeout,
                             SUBSCRIBER_READ_TIMEOUT)
    end
    local threads = { thread_spawn(ping, dc, r, sub) }
    threads[#threads + 1] = r:spawn_watch(thread_spawn, watch, dc, r, sub)
    for i = 2, #socks do
        threads[#threads + 1] = thread_spawn(read, dc, r, sub, i)
    end
    read(dc, r, sub, 1)

    for i = 1, #threads do
        thread_kill(threads[i])
    end
    close_all(socks)
    if m then
        subscriber_gauges(m, where, false)
    end
    if worker_exiting() then
        return nil
    end
    return sub.ended
end


local function sleep_unless_exiting(seconds)
    -- (Not "> 0": 0.4 less four slices is 3e-17, and nginx warns about a
    -- sleep of 0 without the delayed events patch.)
    while seconds >= 0.001 and not worker_exiting() do
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
