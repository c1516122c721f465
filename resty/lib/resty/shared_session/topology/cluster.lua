-- resty.shared_session.topology.cluster: Redis Cluster (PROTOCOL.md section
-- 14). A key's commands go to the primary of its slot, found in the slot
-- map of this configuration (`cluster_state`, per worker after the fork),
-- fetched from any node that answers CLUSTER SLOTS; a MOVED or ASK is
-- followed once. cluster.lua holds the slot arithmetic and the map; this
-- module how a connection is had from them.

local redis = require "resty.shared_session.redis"
local cluster = require "resty.shared_session.cluster"
local control = require "resty.shared_session.control"

local ngx = ngx
local ngx_log = ngx.log
local INFO = ngx.INFO

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local format = string.format

local connect_options = redis.connect_options
local open_node = redis.open_node
local release = redis.release
local parse_notice = control.parse
local primaries = cluster.primaries


local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }


-- `r`: the checked redis options; `check` as in topology/sentinel.lua.
function _M.new(r, check)
    local nodes = type(r.cluster) == "table" and r.cluster.nodes
    if type(nodes) ~= "table" or #nodes == 0 then
        check.error("redis.cluster", "must be { nodes = { { host =, port"
                    .. " = }, ... } }")
    end
    for i, n in ipairs(nodes) do
        local name = "redis.cluster.nodes[" .. i .. "]"
        if type(n) ~= "table" then
            check.error(name, "must be a table { host =, port = }")
        end
        check.string(name .. ".host", n.host)
        n.port = check.number(name .. ".port", n.port, 1, true)
    end
    if r.sentinels or r.socket then
        check.error("redis.cluster", "cannot be used with redis."
                    .. (r.sentinels and "sentinels" or "socket"))
    end
    if r.db ~= 0 then
        check.error("redis.db", "must be 0 with redis.cluster")
    end
    -- Per worker after the fork: the slot map.
    r.cluster_state = {}
    r.connect_options = connect_options(r.host, r.port, r.db, r.pool_size, r)
    return setmetatable(r, mt)
end


-- A session's keys must share a slot: the v1 layout's are in three.
function _M.splits_slots()
    return true
end


-- The node table of host:port, with its connect options.
local function node(r, host, port)
    return { host = host, port = port,
             connect_options = connect_options(host, port, 0, r.pool_size, r) }
end


local function refresh_slots(r)
    local state = r.cluster_state
    local candidates = {}
    if state.map then
        for _, n in pairs(state.map.nodes) do
            candidates[#candidates + 1] = n
        end
    end
    local function make_node(host, port)
        return node(r, host, port)
    end
    for _, seed in ipairs(r.cluster.nodes) do
        candidates[#candidates + 1] = node(r, seed.host, seed.port)
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
_M.open_failed = refresh_soon     -- a failover, perhaps


-- The primary serving `slot_key`'s slot: host, port and connect options,
-- or nil and an error. No key (an acknowledgement to publish): the
-- configured nodes in turn; a PUBLISH on any node of a cluster reaches the
-- subscribers of every node.
function _M:address(slot_key)
    local state = self.cluster_state
    if not slot_key then
        local seeds = self.cluster.nodes
        state.next_seed = (state.next_seed or 0) % #seeds + 1
        local seed = seeds[state.next_seed]
        return seed.host, seed.port,
               node(self, seed.host, seed.port).connect_options
    end
    local map = state.map
    if not map then
        local err
        map, err = refresh_slots(self)
        if not map then
            return nil, err
        end
    end
    local n = cluster.node_for(map, cluster.slot(slot_key))
    if not n then
        refresh_soon(self)
        return nil, "no primary known for the slot"
    end
    return n.host, n.port, n.connect_options
end


-- A MOVED or ASK error reply on red (read whole: red goes back to the pool):
-- its kind and a connection to the node it names (a MOVED also updates the
-- slot map and asks for a refresh soon); the kind, nil and an error when
-- that node cannot be reached; nil, nil and err unchanged when err is no
-- redirection.
function _M:follow(red, err)
    local kind, slot, host, port = cluster.redirection(err)
    if not kind then
        return nil, nil, err
    end
    release(red, self)
    local n = node(self, host, port)
    if kind == "MOVED" then
        local r = self
        cluster.moved(self.cluster_state.map, slot, host, port,
                      function(h, p) return node(r, h, p) end)
        refresh_soon(self)
    end
    local to, open_err = open_node(self, host, port, n.connect_options)
    if not to then
        return kind, nil, "redis unavailable: " .. open_err
    end
    return kind, to
end


-- The keys of `extra` are in other slots than a session's: none goes in
-- its round trip (each is read on its own primary).
function _M.same_trip()
    return nil
end


-- A batch of refreshes holds one session: each is in a slot of its own.
function _M.batch_size()
    return 1
end


-- The subscriber's connections: one per primary of the slot map (read
-- again when a refresh is due). The list of { host, port, options }, the
-- map and the string naming its primaries; or nil and an error.
function _M:subscribe_targets()
    local cs = self.cluster_state
    if not cs.map or cluster.refresh_due(cs) then
        local map, err = refresh_slots(self)
        if not map then
            return nil, "cluster slots: " .. tostring(err)
        end
    end
    local list, key = primaries(cs.map)
    if #list == 0 then
        return nil, "no primary in the cluster's slot map"
    end
    local nodes = {}
    for i, n in ipairs(list) do
        nodes[i] = { host = n.host, port = n.port, options = {
            pool = format("shared_session:subscriber:%s:%d", n.host, n.port),
        } }
    end
    return nodes, cs.map, key
end


-- The subscriber's errors name the primary: a list to fill.
function _M.node_names()
    return {}
end


-- A section 13.4 notice comes once per primary (PROTOCOL.md section 14).
-- Whether it is to be applied now: `!ack` at its last copy (every earlier
-- notice has come by then, on every connection); `!generation` and
-- `!not-before` at every copy (sections 14.2 and 14.3: they only ever
-- raise the kept value, the second result); an unknown kind never.
function _M.notice_copy(_, sub, payload)
    local kind = parse_notice(payload)
    if kind == "generation" or kind == "not-before" then
        return true, true
    end
    if kind ~= "ack" then
        return false
    end
    local copies = sub.copies
    local seen = (copies[payload] or 0) + 1
    if seen < #sub.socks then
        copies[payload] = seen
        return false
    end
    copies[payload] = nil
    return true, true
end


-- The subscriber's watch of the slot map (`watch`, run as a light thread
-- by `spawn`): the subscription ends when the primaries change.
function _M.spawn_watch(_, spawn, watch, ...)
    return spawn(watch, ...)
end


return _M
