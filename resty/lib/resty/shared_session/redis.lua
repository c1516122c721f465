-- resty.shared_session.redis: the Redis operations of the rock, the same
-- on every topology: a connection made ready (TLS, AUTH, SELECT), pooled
-- connections, the commands of the checks sent in one round trip, and a
-- query run on the primary of a key, once more where a redirection points.
-- How a connection is had (one server, Sentinel, Cluster) is the
-- topology's (topology/*.lua), whose instance is the `r` every function
-- here takes; key names are the layout's (layout/*.lua).

local ngx = ngx
local ngx_log = ngx.log
local INFO = ngx.INFO

local pcall = pcall
local require = require
local tostring = tostring
local rawget = rawget
local format = string.format


-- The same library is `resty.redis` on OpenResty and `nginx.redis` on Debian.
-- OpenResty's name for a library, or the one Debian's packages give it.
local function require_either(name, debian_name)
    local ok, mod = pcall(require, name)
    if not ok then
        ok, mod = pcall(require, debian_name)
    end
    return ok and mod or nil
end

local resp = require "resty.shared_session.resp"
local metrics = require "resty.shared_session.metrics"

local bulk = resp.bulk
local resp_pipeline = resp.pipeline
local reply_error = resp.reply_error
local clock = metrics.clock
local redis_time = metrics.redis_time
local redis_error = metrics.redis_error

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


-- A new client object (resty.redis), or nil and an error.
function _M.new_client()
    if not redis_lib then
        return nil, redis_load_err
    end
    return redis_lib:new()
end


-- lua-resty-redis-connector's get_master (topology/sentinel.lua).
function _M.get_master(red, master_name)
    return sentinel_lib.get_master(red, master_name)
end


-- A connection to host and port, ready for commands (TLS, AUTH and SELECT
-- done on a new one): a resty.redis object, or nil and an error.
local function open_node(r, host, port, options)
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
        r:open_failed()     -- a failover, perhaps
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
                r:open_failed()
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
_M.open_node = open_node


-- The one place that opens a connection for the checks: to the configured
-- server, the Sentinel primary, or (cluster) the primary of `slot_key`.
local function connect(r, slot_key)
    local host, port, options = r:address(slot_key)
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


-- The commands of the checks, made here of resp.lua's bulk strings and sent
-- on red's socket: resty.redis builds each in Lua, measured at 27-50 us of
-- worker CPU a command on Debian's nginx (as refresh.lua's pipeline).
local ASKING = "*1\r\n$6\r\nASKING\r\n"
local GET = "*2\r\n$3\r\nGET\r\n"
local PTTL = "*2\r\n$4\r\nPTTL\r\n"
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


-- Sends the check's commands on `red`: GET signature_key when there is one
-- (stored mode), SISMEMBER groups_key group_id, then a GET of each `extra`
-- key, then PTTL groups_key (the session's remaining life: PROTOCOL.md
-- section 12, in the same slot as the key SISMEMBER reads); one round
-- trip. When following an ASK, each command comes after an ASKING of its
-- own (the flag holds for one command). The SISMEMBER reply, or nil and
-- an error; then the signature's GET reply, the extra replies (a list, in
-- order) and the PTTL reply (ms; -1: no expiry, -2: no key).
local function ask(red, asking, groups_key, signature_key, group_id, extra)
    local before = asking and ASKING or ""
    local out = ""
    if signature_key then
        out = before .. GET .. bulk(signature_key)
    end
    local groups = bulk(groups_key)
    out = out .. before .. SISMEMBER .. groups .. bulk(group_id)
    local n = extra and #extra or 0
    for i = 1, n do
        out = out .. before .. GET .. bulk(extra[i])
    end
    out = out .. before .. PTTL .. groups
    local step = asking and 2 or 1     -- replies per command
    local first = signature_key and 1 or 0
    local res, err = run(red, out, (first + n + 2) * step)
    if not res then
        return nil, err
    end
    local function reply(i)     -- the reply of the i-th command (1-based)
        return res[i * step]
    end
    local extra_replies
    if extra then
        extra_replies = {}
        for i = 1, n do
            extra_replies[i] = reply(first + 1 + i)
        end
    end
    return reply(first + 1), nil, signature_key and reply(1) or nil,
           extra_replies, reply(first + n + 2)
end
_M.ask = ask


-- The operation (metrics' label `op`) of each query given to on_primary:
-- the check's by default; others name theirs (name_query).
local QUERY_OP = { [ask] = "check" }

function _M.name_query(query, op)
    QUERY_OP[query] = op
end


-- query(red, asking, ...) on the connection for slot_key (on a cluster, the
-- primary of its slot), and once more on the node a MOVED or ASK names
-- (asking: true after an ASK). The query returns its reply, or nil and an
-- error, then up to three more values, passed on. Returns the same, its error
-- as "redis unavailable: ..." or "redis error: ...". The connection goes
-- back to the pool, or is closed on error so that a half-read reply never
-- reaches the next request.
local function on_primary(r, slot_key, query, ...)
    local m = r.metrics
    local started = m and clock()
    local red, err = connect(r, slot_key)
    if not red then
        if m then
            redis_error(m, QUERY_OP[query] or "check", err)
        end
        return nil, "redis unavailable: " .. err
    end
    local res, more, rest, last
    res, err, more, rest, last = query(red, false, ...)
    local kind, to
    if err then
        kind, to, err = r:follow(red, err)
    end
    if kind then
        if not to then
            if m then
                redis_error(m, QUERY_OP[query] or "check", err)
            end
            return nil, err
        end
        red = to
        res, err, more, rest, last = query(red, kind == "ASK", ...)
    end
    if err then
        red:close()
        if m then
            redis_error(m, QUERY_OP[query] or "check", err)
        end
        return nil, "redis error: " .. tostring(err)
    end
    release(red, r)
    if m then
        redis_time(m, QUERY_OP[query] or "check", clock() - started)
    end
    return res, nil, more, rest, last
end
_M.on_primary = on_primary


-- GET of each key of `keys`, and PTTL of `pttl_key` when given (its reply
-- last), in one round trip; when following an ASK, each after an ASKING of
-- its own. The list of replies, or nil and an error.
local function get_all(red, asking, keys, pttl_key)
    local before = asking and ASKING or ""
    local out = ""
    for i = 1, #keys do
        out = out .. before .. GET .. bulk(keys[i])
    end
    local n = #keys
    if pttl_key then
        out = out .. before .. PTTL .. bulk(pttl_key)
        n = n + 1
    end
    local res, err = run(red, out, asking and 2 * n or n)
    if not res then
        return nil, err
    end
    if asking then
        local replies = {}
        for i = 1, n do
            replies[i] = res[2 * i]
        end
        return replies
    end
    return res
end
_M.get_all = get_all
QUERY_OP[get_all] = "check"     -- the compact layout's check


-- GET k, after ASKING when following an ASK: the reply, or nil and an error.
local function get(red, asking, k)
    local res, err = get_all(red, asking, { k })
    if not res then
        return nil, err
    end
    return res[1]
end


-- GET `k` on the primary of its own slot (on a cluster, PROTOCOL.md section
-- 14.2), a MOVED or ASK followed once. The reply (ngx.null: no key), or
-- nil and an error ("redis unavailable: ..." or "redis error: ...").
QUERY_OP[get] = "get"

function _M.get_at(r, k)
    return on_primary(r, k, get, k)
end

return _M
