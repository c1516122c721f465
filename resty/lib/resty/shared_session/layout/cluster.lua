-- resty.shared_session.layout.cluster: the cluster key layout (PROTOCOL.md
-- section 14): the v1 layout's three keys named <prefix>:{<sid>}:<kind>,
-- so that a session's keys share one slot. Section 13's per-user index is
-- in a slot of its own: the refresh raises the session's member in a
-- second step (section 14.1), and the mark and generations only ever rise
-- (sections 14.2 and 14.3), on a cluster and on one Redis alike.

local v1 = require "resty.shared_session.layout.v1"
local base = require "resty.shared_session.layout.base"
local resp = require "resty.shared_session.resp"

local setmetatable = setmetatable
local find = string.find

local bulk = resp.bulk


local _M = setmetatable({ _VERSION = "0.1.0", CONTROLS_ONLY_RISE = true },
                        { __index = v1 })
local mt = { __index = _M }
_M.mt = mt

local CLUSTER = bulk("cluster")


-- The keyspace of `prefix` on the topology `r`: a prefix holding { or }
-- would be the hash tag, not the session id.
function _M.new(prefix, r, check)
    if find(prefix, "[{}]") then
        check.error("key_prefix", "must hold no { or } with key_layout"
                    .. ' "cluster" (the session id is the hash tag)')
    end
    return setmetatable(base.fields(prefix, r), mt)
end


-- <prefix>:{<sid>}:<kind>.
function _M:key(kind, sid)
    return self.prefix .. ":{" .. sid .. "}:" .. kind
end


-- One argument more, "cluster": the script answers { idle, ttl, user }
-- and the user's index is raised on its own primary (section 14.1).
function _M.refresh_shape()
    return 3, CLUSTER, 1
end


return _M
