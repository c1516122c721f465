-- resty.shared_session.redis: the Redis side of the check (PROTOCOL.md
-- sections 3 and 5): the key layout, pooled connections for the checks, and
-- the primary named by Redis Sentinel.

local ngx = ngx
local ngx_log = ngx.log
local ngx_now = ngx.now
local INFO = ngx.INFO

local type = type
local ipairs = ipairs
local pcall = pcall
local require = require
local tostring = tostring
local tonumber = tonumber
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


-- <prefix>:<kind>:<sid>, kind being "data", "signature" or "groups".
local function key(prefix, kind, sid)
    return prefix .. ":" .. kind .. ":" .. sid
end
_M.key = key


-- One pool per server and database, so that a pooled connection never
-- serves a request that expects another database or another server.
local function connect_options(host, port, db, pool_size)
    return {
        pool = format("shared_session:%s:%d:%d", host, port, db),
        pool_size = pool_size,
    }
end
_M.connect_options = connect_options


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
                                                      r.pool_size),
                }
            end
            red:close()
        end
        last_err = format("sentinel %s:%d: %s", sentinel.host, sentinel.port,
                          tostring(err or "no master known"))
    end
    return nil, last_err
end


-- Where the sessions are: the configured server, or the primary that the
-- sentinels name. host, port and connect options, or nil and an error.
local function address(r)
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


-- The one place that opens a connection for the checks: a resty.redis
-- object, or nil and an error.
local function connect(r)
    if not redis_lib then
        return nil, redis_load_err
    end

    local host, port, options = address(r)
    if not host then
        return nil, port
    end

    local red, err = redis_lib:new()
    if not red then
        return nil, err
    end

    red:set_timeout(r.connect_timeout)
    local ok
    ok, err = red:connect(host, port, options)
    if not ok then
        forget_master()
        return nil, "connect: " .. tostring(err)
    end
    red:set_timeout(r.read_timeout)

    -- AUTH and SELECT stick to the connection: only a new one needs them.
    if red:get_reused_times() == 0 then
        if r.password then
            ok, err = red:auth(r.password)
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
_M.connect = connect


local function release(red, r)
    local ok, err = red:set_keepalive(r.keepalive_timeout, r.pool_size)
    if not ok then
        ngx_log(INFO, "shared_session: redis connection not pooled: ", err)
    end
end
_M.release = release


-- commit_pipeline() reports a command's error as { false, message }.
local function pipeline_error(res)
    if type(res) == "table" and res[1] == false then
        return tostring(res[2])
    end
end


-- The question of the check: SISMEMBER <prefix>:groups:<sid> group_id, and
-- with `with_signature` (stored mode) GET <prefix>:signature:<sid> in the
-- same round trip. Returns the SISMEMBER reply, or nil and an error
-- ("redis unavailable: ..." or "redis error: ..."); then, in stored mode, the
-- GET reply. The connection goes back to the pool, or is closed on error so
-- that a half-read reply never reaches the next request.
function _M.membership(r, prefix, sid, group_id, with_signature)
    local red, err = connect(r)
    if not red then
        return nil, "redis unavailable: " .. err
    end

    local groups_key = key(prefix, "groups", sid)
    local member, stored

    if not with_signature then
        member, err = red:sismember(groups_key, group_id)

    else
        -- Fetch the signature and ask for membership in one round trip; the
        -- caller uses the answer only if the signature matches.
        red:init_pipeline(2)
        red:get(key(prefix, "signature", sid))
        red:sismember(groups_key, group_id)
        local res
        res, err = red:commit_pipeline()
        if res then
            err = pipeline_error(res[1]) or pipeline_error(res[2])
            stored, member = res[1], res[2]
        end
    end

    if err then
        red:close()
        return nil, "redis error: " .. err
    end

    release(red, r)
    return member, nil, stored
end


return _M
