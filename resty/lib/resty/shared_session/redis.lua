-- resty.shared_session.redis: the Redis side of the check (PROTOCOL.md
-- sections 3 and 5): the key layout, pooled connections for the checks, and
-- the primary named by Redis Sentinel.

local ngx = ngx
local ngx_log = ngx.log
local ngx_now = ngx.now
local ngx_null = ngx.null
local INFO = ngx.INFO
local WARN = ngx.WARN

local ipairs = ipairs
local pcall = pcall
local require = require
local tostring = tostring
local tonumber = tonumber
local rawget = rawget
local format = string.format
local pairs = pairs
local remove = table.remove


-- The same library is `resty.redis` on OpenResty and `nginx.redis` on Debian.
-- OpenResty's name for a library, or the one Debian's packages give it.
local function require_either(name, debian_name)
    local ok, mod = pcall(require, name)
    if not ok then
        ok, mod = pcall(require, debian_name)
    end
    return ok and mod or nil
end

local cluster = require "resty.shared_session.cluster"
local compact = require "resty.shared_session.compact"
local log = require "resty.shared_session.log"
local resp = require "resty.shared_session.resp"

local compact_key = compact.key
local parse_compact = compact.parse
local sid_hint = log.sid_hint
local bulk = resp.bulk
local resp_pipeline = resp.pipeline
local reply_error = resp.reply_error

local redis_lib = require_either("resty.redis", "nginx.redis")
local redis_load_err = not redis_lib
    and "no redis client library (resty.redis or nginx.redis)" or nil

-- Sentinel support: get_master() from lua-resty-redis-connector's package.
local sentinel_lib = require_either("resty.redis.sentinel",
                                    "nginx.redis.sentinel")


local _M = {
    _VERSION = "0.1.0",
    -- configure() refuses redis.sentinels without it.
    has_sentinel = sentinel_lib ~= nil,
}


-- <prefix>:<kind>:<sid>, kind being "data", "signature" or "groups"; in
-- the cluster layout (PROTOCOL.md section 14, `layout` "cluster")
-- <prefix>:{<sid>}:<kind>, so that a session's keys share one slot. (The
-- compact layout's one key is compact.key.)
local function key(prefix, kind, sid, layout)
    if layout == "cluster" then
        return prefix .. ":{" .. sid .. "}:" .. kind
    end
    return prefix .. ":" .. kind .. ":" .. sid
end
_M.key = key


-- One pool per server, database, transport and user, so that a pooled
-- connection never serves a request that expects another database, another
-- server, TLS or another ACL user. `r` (the redis options) is optional.
local function connect_options(host, port, db, pool_size, r)
    local pool = format("shared_session:%s:%s:%d", host, tostring(port), db)
    if r and (r.ssl or r.username) then
        pool = format("%s:%s:%s", pool, r.ssl and "tls" or "tcp",
                      r.username or "")
    end
    return { pool = pool, pool_size = pool_size }
end
_M.connect_options = connect_options


-- conn:connect (a cosocket, or a resty.redis object) to host and port, or
-- to host alone when port is false (host is then "unix:<path>").
local function connect_to(conn, host, port, options)
    if port then
        return conn:connect(host, port, options)
    end
    return conn:connect(host, options)
end
_M.connect_to = connect_to


-- TLS on a new connection (a bare cosocket), verified as configured;
-- the connection is closed when the handshake fails. Under pcall: some
-- lua-resty-core versions (Debian's) raise an assertion instead of returning
-- an error when the certificate does not match server_name; that is a
-- failed handshake too (nginx logs the reason itself).
local function start_tls(sock, r)
    local called, ok, err = pcall(sock.sslhandshake, sock, nil,
                                  r.server_name or nil, r.ssl_verify)
    if not called then
        ok, err = nil, ok
    end
    if not ok then
        sock:close()
        return nil, "tls: " .. tostring(err)
    end
    return true
end
_M.start_tls = start_tls


-- The arguments of AUTH for these options: (username, password) for an ACL
-- user, (password) for requirepass, nil for none.
local function auth_args(r)
    if r.username then
        return r.username, r.password
    end
    return r.password or nil
end
_M.auth_args = auth_args


-- With Sentinel: the primary the sentinels name, remembered by this worker
-- for MASTER_TTL seconds (and forgotten at once when it cannot be reached), so
-- that a check costs one round trip, not three. Not request state: every
-- request of the worker may share it.
local MASTER_TTL = 1
local known_master      -- { host =, port =, connect_options =, at = }

local function forget_master()
    known_master = nil
end
_M.forget_master = forget_master


local function ask_sentinels(r)
    local last_err = "no sentinel answered"
    for _, sentinel in ipairs(r.sentinels) do
        local red = redis_lib:new()
        red:set_timeout(r.connect_timeout)
        local ok, err = red:connect(sentinel.host, sentinel.port)
        if ok then
            red:set_timeout(r.read_timeout)
            local master
            master, err = sentinel_lib.get_master(red, r.master_name)
            if master then
                red:set_keepalive(r.keepalive_timeout, r.pool_size)
                local port = tonumber(master.port)
                return {
                    host = master.host, port = port, at = ngx_now(),
                    connect_options = connect_options(master.host, port, r.db,
                                                      r.pool_size, r),
                }
            end
            red:close()
        end
        last_err = format("sentinel %s:%d: %s", sentinel.host, sentinel.port,
                          tostring(err or "no master known"))
    end
    return nil, last_err
end


-- Redis Cluster: the slot map of this configuration (r.cluster_state, per
-- worker after the fork), fetched from any node that answers CLUSTER SLOTS:
-- the nodes of the last map first, then the configured ones.
local open_node     -- defined below: a connection to one host and port

local function cluster_node(r)
    return function(host, port)
        return { host = host, port = port,
                 connect_options = connect_options(host, port, 0, r.pool_size,
                                                   r) }
    end
end

local function refresh_slots(r)
    local state = r.cluster_state
    local candidates = {}
    if state.map then
        for _, n in pairs(state.map.nodes) do
            candidates[#candidates + 1] = n
        end
    end
    local make_node = cluster_node(r)
    for _, seed in ipairs(r.cluster.nodes) do
        candidates[#candidates + 1] = make_node(seed.host, seed.port)
    end
    local last_err = "no cluster node answered"
    state.refreshing = true
    for _, n in ipairs(candidates) do
        local red, err = open_node(r, n.host, n.port, n.connect_options)
        if red then
            local reply
            reply, err = red:cluster("slots")
            if reply then
                local map
                map, err = cluster.map_from_slots(reply, make_node)
                if map then
                    red:set_keepalive(r.keepalive_timeout, r.pool_size)
                    state.map = map
                    state.refreshing = false
                    return map
                end
            end
            red:close()
        end
        last_err = format("cluster node %s:%d: %s", n.host, n.port,
                          tostring(err))
    end
    state.refreshing = false
    return nil, last_err
end
_M.refresh_slots = refresh_slots


-- A full refresh in the background, at most once per
-- cluster.REFRESH_INTERVAL per worker (after a MOVED, or a node that does
-- not answer: a failover or a resharding).
local function refresh_soon(r)
    if cluster.refresh_due(r.cluster_state) then
        ngx.timer.at(0, function(premature)
            if not premature then
                local ok, err = refresh_slots(r)
                if not ok then
                    ngx_log(INFO, "shared_session: cluster slots: ", err)
                end
            end
        end)
    end
end


-- The primary serving `slot_key`'s slot: host, port and connect options,
-- or nil and an error.
local function cluster_address(r, slot_key)
    local map = r.cluster_state.map
    if not map then
        local err
        map, err = refresh_slots(r)
        if not map then
            return nil, err
        end
    end
    local n = cluster.node_for(map, cluster.slot(slot_key))
    if not n then
        refresh_soon(r)
        return nil, "no primary known for the slot"
    end
    return n.host, n.port, n.connect_options
end


-- Where the sessions are: the configured server, or the primary that the
-- sentinels name, or (cluster) the primary of `slot_key`'s slot. host, port
-- and connect options, or nil and an error.
local function address(r, slot_key)
    if r.cluster then
        if slot_key then
            return cluster_address(r, slot_key)
        end
        -- No key (an acknowledgement to publish): the configured nodes in
        -- turn; a PUBLISH on any node of a cluster reaches the subscribers
        -- of every node.
        local state, seeds = r.cluster_state, r.cluster.nodes
        state.next_seed = (state.next_seed or 0) % #seeds + 1
        local seed = seeds[state.next_seed]
        return seed.host, seed.port, cluster_node(r)(seed.host, seed.port)
                                         .connect_options
    end
    if not r.sentinels then
        return r.host, r.port, r.connect_options
    end
    local master = known_master
    if not master or ngx_now() - master.at > MASTER_TTL then
        local err
        master, err = ask_sentinels(r)
        if not master then
            return nil, err
        end
        known_master = master
    end
    return master.host, master.port, master.connect_options
end
_M.address = address


-- A connection to host and port, ready for commands (TLS, AUTH and SELECT
-- done on a new one): a resty.redis object, or nil and an error.
function open_node(r, host, port, options)
    if not redis_lib then
        return nil, redis_load_err
    end

    local red, err = redis_lib:new()
    if not red then
        return nil, err
    end

    red:set_timeout(r.connect_timeout)
    local ok
    ok, err = connect_to(red, host, port, options)
    if not ok then
        forget_master()
        if r.cluster then
            refresh_soon(r)     -- a failover, perhaps
        end
        return nil, "connect: " .. tostring(err)
    end
    red:set_timeout(r.read_timeout)

    -- TLS, AUTH and SELECT stick to the connection: only a new one needs them.
    if red:get_reused_times() == 0 then
        if r.ssl then
            -- lua-resty-redis before 0.28 (Debian's) has no ssl option:
            -- the handshake is done on its cosocket.
            ok, err = start_tls(rawget(red, "_sock"), r)
            if not ok then
                forget_master()
                return nil, err
            end
        end
        if r.password then
            ok, err = red:auth(auth_args(r))
            if not ok then
                red:close()
                return nil, "auth: " .. tostring(err)
            end
        end
        if r.db ~= 0 then
            ok, err = red:select(r.db)
            if not ok then
                red:close()
                return nil, "select: " .. tostring(err)
            end
        end
    end

    return red
end


-- The one place that opens a connection for the checks: to the configured
-- server, the Sentinel primary, or (cluster) the primary of `slot_key`.
local function connect(r, slot_key)
    local host, port, options = address(r, slot_key)
    if not host then
        return nil, port
    end
    return open_node(r, host, port, options)
end
_M.connect = connect


local function release(red, r)
    local ok, err = red:set_keepalive(r.keepalive_timeout, r.pool_size)
    if not ok then
        ngx_log(INFO, "shared_session: redis connection not pooled: ", err)
    end
end
_M.release = release


-- A MOVED or ASK error reply on red (read whole: red goes back to the pool)
-- on a cluster: its kind and a connection to the node it names (a MOVED
-- also updates the slot map and asks for a refresh soon); the kind, nil and
-- an error when that node cannot be reached; nil, nil and err unchanged
-- when err is no redirection.
local function follow(r, red, err)
    local kind, slot, host, port = cluster.redirection(err)
    if not kind then
        return nil, nil, err
    end
    release(red, r)
    local n = cluster_node(r)(host, port)
    if kind == "MOVED" then
        cluster.moved(r.cluster_state.map, slot, host, port, cluster_node(r))
        refresh_soon(r)
    end
    local to, open_err = open_node(r, host, port, n.connect_options)
    if not to then
        return kind, nil, "redis unavailable: " .. open_err
    end
    return kind, to
end


-- The commands of the checks, made here of resp.lua's bulk strings and sent
-- on red's socket: resty.redis builds each in Lua, measured at 27-50 us of
-- worker CPU a command on Debian's nginx (as refresh.lua's pipeline).
local ASKING = "*1\r\n$6\r\nASKING\r\n"
local GET = "*2\r\n$3\r\nGET\r\n"
local SISMEMBER = "*3\r\n$9\r\nSISMEMBER\r\n"


-- Sends `commands` (n of them) on red in one write and reads their n
-- replies: the list, or nil and an error (the first error reply's message,
-- every reply read; or the socket's, the connection then to be closed).
local function run(red, commands, n)
    local res, err = resp_pipeline(rawget(red, "_sock"), commands, n)
    if not res then
        return nil, err
    end
    for i = 1, n do
        err = reply_error(res[i])
        if err then
            return nil, err
        end
    end
    return res
end


-- Sends the check's commands on `red`: ASKING when following an ASK, GET
-- signature_key when there is one (stored mode), SISMEMBER groups_key
-- group_id, then a GET of each `extra` key; one round trip. The SISMEMBER
-- reply, or nil and an error; then the signature's GET reply, then the
-- extra replies (a list, in order).
local function ask(red, asking, groups_key, signature_key, group_id, extra)
    local out = asking and ASKING or ""
    if signature_key then
        out = out .. GET .. bulk(signature_key)
    end
    out = out .. SISMEMBER .. bulk(groups_key) .. bulk(group_id)
    local n = extra and #extra or 0
    for i = 1, n do
        out = out .. GET .. bulk(extra[i])
    end
    local at = (asking and 1 or 0) + (signature_key and 1 or 0) + 1
    local res, err = run(red, out, at + n)
    if not res then
        return nil, err
    end
    local extra_replies
    if extra then
        extra_replies = {}
        for i = 1, n do
            extra_replies[i] = res[at + i]
        end
    end
    return res[at], nil, signature_key and res[at - 1] or nil, extra_replies
end


-- query(red, asking, ...) on the connection for slot_key (on a cluster, the
-- primary of its slot), and once more on the node a MOVED or ASK names
-- (asking: true after an ASK). The query returns its reply, or nil and an
-- error, then up to two more values, passed on. Returns the same, its error
-- as "redis unavailable: ..." or "redis error: ...". The connection goes
-- back to the pool, or is closed on error so that a half-read reply never
-- reaches the next request.
local function on_primary(r, slot_key, query, ...)
    local red, err = connect(r, slot_key)
    if not red then
        return nil, "redis unavailable: " .. err
    end
    local res, more, rest
    res, err, more, rest = query(red, false, ...)
    local kind, to
    if err and r.cluster then
        kind, to, err = follow(r, red, err)
    end
    if kind then
        if not to then
            return nil, err
        end
        red = to
        res, err, more, rest = query(red, kind == "ASK", ...)
    end
    if err then
        red:close()
        return nil, "redis error: " .. tostring(err)
    end
    release(red, r)
    return res, nil, more, rest
end


-- GET of each key of `keys` (after ASKING when following an ASK), in one
-- round trip: the list of replies, or nil and an error.
local function get_all(red, asking, keys)
    local out = asking and ASKING or ""
    for i = 1, #keys do
        out = out .. GET .. bulk(keys[i])
    end
    local res, err = run(red, out, #keys + (asking and 1 or 0))
    if not res then
        return nil, err
    end
    if asking then
        remove(res, 1)
    end
    return res
end


-- The compact layout (PROTOCOL.md section 15): one GET of the session's
-- key, and of the `extra` keys in the same round trip; the value read as
-- section 15 says (compact.parse). Returns what membership() returns: 1 or
-- 0 as SISMEMBER would answer, the signature the value holds (with
-- `with_signature`; ngx.null when there is no session: absent or
-- malformed), the extra replies.
local function compact_membership(r, prefix, sid, group_id, with_signature,
                                  extra)
    local k = compact_key(prefix, sid)
    local keys = { k }
    local n = extra and #extra or 0
    for i = 1, n do
        keys[i + 1] = extra[i]
    end
    local replies, err = on_primary(r, k, get_all, keys)
    if not replies then
        return nil, err
    end
    local extra_replies
    if extra then
        extra_replies = {}
        for i = 1, n do
            extra_replies[i] = replies[i + 1]
        end
    end
    local value = replies[1]
    local signature, groups = parse_compact(value)
    if not signature then
        if value ~= ngx_null then
            -- No session to a reader (section 15); a writer deletes it.
            ngx_log(WARN, "shared_session: malformed session value, treated"
                    .. " as no session (sid ", sid_hint(sid), ")")
        end
        return 0, nil, with_signature and ngx_null or nil, extra_replies
    end
    return groups[tostring(group_id)] and 1 or 0, nil,
           with_signature and signature or nil, extra_replies
end


-- The question of the check: SISMEMBER <groups key> group_id, and with
-- `with_signature` (stored mode) GET <signature key> in the same round trip.
-- Returns the SISMEMBER reply, or nil and an error ("redis unavailable: ..."
-- or "redis error: ..."); then, in stored mode, the GET reply. `extra`
-- (PROTOCOL.md section 13): a list of more keys to GET in the same round
-- trip (the not-before mark, a group's generation), their replies returned
-- fourth, as a list in the same order; not on a cluster, where they are in
-- other slots (nil is returned: see get_at). On a
-- cluster, a MOVED or ASK is followed once (on_primary). The compact layout
-- answers the same from one GET (compact_membership).
function _M.membership(r, prefix, sid, group_id, with_signature, extra)
    if r.cluster then
        extra = nil
    end
    local layout = r.key_layout
    if layout == "compact" then
        return compact_membership(r, prefix, sid, group_id, with_signature,
                                  extra)
    end
    local groups_key = key(prefix, "groups", sid, layout)
    local signature_key = with_signature and key(prefix, "signature", sid,
                                                  layout) or nil
    return on_primary(r, groups_key, ask, groups_key, signature_key, group_id,
                      extra)
end


-- GET k, after ASKING when following an ASK: the reply, or nil and an error.
local function get(red, asking, k)
    local res, err = get_all(red, asking, { k })
    if not res then
        return nil, err
    end
    return res[1]
end


-- Redis Cluster (PROTOCOL.md section 14.2): GET `k` on the primary of its
-- own slot, a MOVED or ASK followed once. The reply (ngx.null: no key), or
-- nil and an error ("redis unavailable: ..." or "redis error: ...").
function _M.get_at(r, k)
    return on_primary(r, k, get, k)
end

return _M
