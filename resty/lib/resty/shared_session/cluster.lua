-- resty.shared_session.cluster: the little of Redis Cluster the rock needs
-- (PROTOCOL.md section 14): which slot a key is in (CRC16 of its hash tag),
-- which primary serves a slot (the map from CLUSTER SLOTS, kept per worker),
-- and what a MOVED or ASK redirection says.
--
-- The map is not request state: every request of the worker shares it, as
-- the Sentinel primary is shared in redis.lua. It is fetched on first use;
-- a MOVED updates the one slot at once and asks for a full refresh, which
-- runs at most once per REFRESH_INTERVAL per worker, so a failover or a
-- resharding causes a handful of CLUSTER SLOTS per worker, not one per
-- request.

local bit = require "bit"

local ngx = ngx
local ngx_now = ngx.now

local type = type
local ipairs = ipairs
local tonumber = tonumber
local tostring = tostring
local byte = string.byte
local find = string.find
local match = string.match
local format = string.format
local sort = table.sort
local concat = table.concat
local band = bit.band
local bxor = bit.bxor
local lshift = bit.lshift
local rshift = bit.rshift

local SLOTS = 16384
local REFRESH_INTERVAL = 1      -- s between two full refreshes, at least

local _M = { _VERSION = "0.1.0", SLOTS = SLOTS,
             REFRESH_INTERVAL = REFRESH_INTERVAL }


-- CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), as Redis
-- Cluster's key hash, one table look-up per byte.
local CRC_TABLE = {}
for i = 0, 255 do
    local crc = lshift(i, 8)
    for _ = 1, 8 do
        if band(crc, 0x8000) ~= 0 then
            crc = bxor(lshift(crc, 1), 0x1021)
        else
            crc = lshift(crc, 1)
        end
        crc = band(crc, 0xffff)
    end
    CRC_TABLE[i] = crc
end

local function crc16(s, from, to)
    local crc = 0
    for i = from, to do
        crc = band(bxor(lshift(crc, 8),
                        CRC_TABLE[bxor(rshift(crc, 8), byte(s, i))]), 0xffff)
    end
    return crc
end
_M.crc16 = function(s) return crc16(s, 1, #s) end


-- The slot of a key: the CRC16 of its hash tag (the text between the first
-- "{" and the next "}", when not empty), else of the whole key, mod 16384.
function _M.slot(key)
    local from, to = 1, #key
    local open = find(key, "{", 1, true)
    if open then
        local close = find(key, "}", open + 1, true)
        if close and close > open + 1 then
            from, to = open + 1, close - 1
        end
    end
    return crc16(key, from, to) % SLOTS
end


-- "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>": the kind, the
-- slot and the address; nil for any other error.
function _M.redirection(err)
    if type(err) ~= "string" then
        return nil
    end
    local kind, slot, host, port = match(err, "^(%u+) (%d+) (.+):(%d+)$")
    if kind ~= "MOVED" and kind ~= "ASK" then
        return nil
    end
    return kind, tonumber(slot), host, tonumber(port)
end


-- A slot map: map.slots[slot + 1] is the node (a table { host, port, ... })
-- serving it; nodes are shared between the slots they serve.
local function new_map()
    return { slots = {}, nodes = {}, at = ngx_now() }
end


-- The node table for host:port in `map`, made with `make_node(host, port)`
-- (which adds what the caller needs, such as connect options) the first time.
local function node(map, host, port, make_node)
    local id = format("%s:%d", host, port)
    local n = map.nodes[id]
    if not n then
        n = make_node(host, port)
        map.nodes[id] = n
    end
    return n
end


-- A map from a CLUSTER SLOTS reply:
-- { { from, to, { host, port, id }, replicas... }, ... }.
-- nil and an error when the reply is not one.
function _M.map_from_slots(reply, make_node)
    if type(reply) ~= "table" or #reply == 0 then
        return nil, "no slots in the CLUSTER SLOTS reply"
    end
    local map = new_map()
    local slots = map.slots
    for _, range in ipairs(reply) do
        local from, to, primary = tonumber(range[1]), tonumber(range[2]),
                                  range[3]
        if not from or not to or type(primary) ~= "table" then
            return nil, "unexpected CLUSTER SLOTS reply"
        end
        local n = node(map, tostring(primary[1]), tonumber(primary[2]),
                       make_node)
        for s = from, to do
            slots[s + 1] = n
        end
    end
    return map
end


-- After a MOVED: the slot is served by host:port from now on.
function _M.moved(map, slot, host, port, make_node)
    map.slots[slot + 1] = node(map, host, port, make_node)
end


-- The node serving `slot`, or nil while no primary is known for it.
function _M.node_for(map, slot)
    return map.slots[slot + 1]
end


-- The primaries of a map (the nodes that serve at least one slot), in the
-- order of their slots, and a string naming them all ("host:port,..."),
-- sorted, to compare two maps by.
function _M.primaries(map)
    local list, ids, seen = {}, {}, {}
    local slots = map.slots
    for s = 1, SLOTS do
        local n = slots[s]
        if n and not seen[n] then
            seen[n] = true
            list[#list + 1] = n
            ids[#ids + 1] = format("%s:%d", n.host, n.port)
        end
    end
    sort(ids)
    return list, concat(ids, ",")
end


-- true when a full refresh may run now (and records that it does).
function _M.refresh_due(state)
    local now = ngx_now()
    if state.refreshing or (state.refreshed and now - state.refreshed
                                                 < REFRESH_INTERVAL) then
        return false
    end
    state.refreshed = now
    return true
end


return _M
