-- resty.shared_session.topology.sentinel: the primary that Redis Sentinel
-- names for master_name, remembered by this worker for MASTER_TTL seconds
-- (and forgotten at once when it cannot be reached), so that a check costs
-- one round trip, not three. Everything else is as on one server
-- (topology/single.lua).

local redis = require "resty.shared_session.redis"
local single = require "resty.shared_session.topology.single"

local ngx = ngx
local ngx_now = ngx.now

local type = type
local ipairs = ipairs
local tonumber = tonumber
local tostring = tostring
local setmetatable = setmetatable
local format = string.format

local connect_options = redis.connect_options


local _M = setmetatable({ _VERSION = "0.1.0" }, { __index = single })
local mt = { __index = _M }

local MASTER_TTL = 1

-- Not request state: every request of the worker may share it.
local known_master      -- { host =, port =, connect_options =, at = }


-- `r`: the checked redis options; `check` (config.lua's): error(name,
-- message), string(name, value), number(name, value, min, integer) raise
-- on a bad option.
function _M.new(r, check)
    if type(r.sentinels) ~= "table" or #r.sentinels == 0 then
        check.error("redis.sentinels", "must be a list of { host, port }")
    end
    for i, sentinel in ipairs(r.sentinels) do
        local name = "redis.sentinels[" .. i .. "]"
        if type(sentinel) ~= "table" then
            check.error(name, "must be a table { host =, port = }")
        end
        check.string(name .. ".host", sentinel.host)
        sentinel.port = check.number(name .. ".port", sentinel.port, 1, true)
    end
    check.string("redis.master_name", r.master_name)
    if r.socket then
        check.error("redis.socket", "cannot be used with redis.sentinels")
    end
    if not redis.has_sentinel then
        check.error("redis.sentinels", "need lua-resty-redis-connector"
                    .. " (resty.redis.sentinel)")
    end
    r.connect_options = connect_options(r.host, r.port, r.db, r.pool_size, r)
    return setmetatable(r, mt)
end


function _M.forget_master()
    known_master = nil
end
_M.open_failed = _M.forget_master


local function ask_sentinels(r)
    local last_err = "no sentinel answered"
    for _, sentinel in ipairs(r.sentinels) do
        local red, err = redis.new_client()
        if not red then
            return nil, err
        end
        red:set_timeout(r.connect_timeout)
        local ok
        ok, err = red:connect(sentinel.host, sentinel.port)
        if ok then
            red:set_timeout(r.read_timeout)
            local master
            master, err = redis.get_master(red, r.master_name)
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


-- The primary the sentinels name: host, port and connect options, or nil
-- and an error.
function _M:address()
    local master = known_master
    if not master or ngx_now() - master.at > MASTER_TTL then
        local err
        master, err = ask_sentinels(self)
        if not master then
            return nil, err
        end
        known_master = master
    end
    return master.host, master.port, master.connect_options
end


-- The subscriber asks the sentinels afresh at each (re)subscription.
function _M:subscribe_targets(dc)
    known_master = nil
    return single.subscribe_targets(self, dc)
end


return _M
