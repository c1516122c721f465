-- resty.shared_session.topology.single: one Redis server (host and port, or
-- a Unix socket). A topology says how a connection is had and where the
-- commands of a key go; the commands themselves are redis.lua's, the same
-- on every topology. The configured options are the instance's fields:
-- new() gives the table of options this topology's methods.

local redis = require "resty.shared_session.redis"

local setmetatable = setmetatable

local connect_options = redis.connect_options


local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }
_M.mt = mt


-- `r`: the checked redis options of configure(), made the instance.
function _M.new(r)
    if r.socket then
        -- ngx.socket.tcp's form for a Unix domain socket; no port.
        r.host, r.port = "unix:" .. r.socket, false
    end
    r.connect_options = connect_options(r.host, r.port, r.db, r.pool_size, r)
    return setmetatable(r, mt)
end


-- true when a session's keys must share a slot (no layout spreads them).
function _M.splits_slots()
    return false
end


-- host, port and connect options of the server for a key (any key here),
-- or nil and an error.
function _M:address()
    return self.host, self.port, self.connect_options
end


-- A connection to the server could not be made (nothing to forget here).
function _M.open_failed()
end


-- An error reply is never a redirection on one server: nil, nil, err.
function _M.follow(_, _, err)
    return nil, nil, err
end


-- The keys of `extra` can go in the round trip of a session's own query:
-- one server holds every key.
function _M.same_trip(_, extra)
    return extra
end


-- Sessions refreshed on one connection, at most: `n` (any batch).
function _M.batch_size(_, n)
    return n
end


-- The subscriber's connections: one, to the server, under its own pool.
function _M:subscribe_targets(dc)
    local host, port = self:address()
    if not host then
        return nil, port
    end
    return { { host = host, port = port,
               options = dc.subscriber_connect_options } }
end


-- Connection names for the subscriber's errors: none with one connection.
function _M.node_names()
    return nil
end


-- Whether a section 13.4 notice is to be applied now (it comes once), and
-- whether its value may only raise the kept one (no: in order).
function _M.notice_copy()
    return true, false
end


-- No slot map to watch on one server.
function _M.spawn_watch()
    return nil
end


return _M
