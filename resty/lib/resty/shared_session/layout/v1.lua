-- resty.shared_session.layout.v1: the v1 key layout (PROTOCOL.md section
-- 3): a session is three keys, <prefix>:data:<sid> (its JSON),
-- <prefix>:signature:<sid> and <prefix>:groups:<sid> (a set). The
-- membership query is one SISMEMBER (and a GET of the signature in stored
-- mode) in one round trip.

local base = require "resty.shared_session.layout.base"
local redis = require "resty.shared_session.redis"
local resp = require "resty.shared_session.resp"
local log = require "resty.shared_session.log"

local ngx = ngx
local ngx_log = ngx.log
local ngx_null = ngx.null
local WARN = ngx.WARN

local type = type
local pcall = pcall
local require = require
local tostring = tostring
local setmetatable = setmetatable
local find = string.find

local on_primary = redis.on_primary
local ask = redis.ask
local bulk = resp.bulk
local session_hint = log.session_hint


-- Optional: only the 0.1.x API's get_data() needs it.
local cjson
do
    local ok, mod = pcall(require, "cjson.safe")
    if ok then
        cjson = mod
    end
end


local _M = setmetatable({
    _VERSION = "0.1.0",
    -- Section 13's mark and generations come in order, on one Redis: a
    -- notice sets the kept value (it may lower it).
    CONTROLS_ONLY_RISE = false,
}, { __index = base })
local mt = { __index = _M }
_M.mt = mt


-- The keyspace of `prefix` on the topology `r`; `check` (config.lua's)
-- raises on options this layout cannot serve.
function _M.new(prefix, r, check)
    if r:splits_slots() then
        check.error("redis.cluster", 'needs key_layout = "cluster" or'
                    .. ' "compact": the v1 keys of a session are in three'
                    .. " slots")
    end
    return setmetatable(base.fields(prefix, r), mt)
end


-- <prefix>:<kind>:<sid>.
function _M:key(kind, sid)
    return self.prefix .. ":" .. kind .. ":" .. sid
end

function _M:data_key(sid)
    return self:key("data", sid)
end

function _M:signature_key(sid)
    return self:key("signature", sid)
end

function _M:groups_key(sid)
    return self:key("groups", sid)
end


-- SISMEMBER <groups key> group_id, and with `with_signature` (stored mode)
-- GET <signature key>, then a GET of each `extra` key, then PTTL <groups
-- key> (the session's remaining life, PROTOCOL.md section 12), in one
-- round trip. Returns the SISMEMBER reply, or nil and an error ("redis
-- unavailable: ..." or "redis error: ..."); then the GET of the signature
-- (nil unless asked for), then the extra replies (a list, in order; nil
-- without extra), then the PTTL reply. On a cluster a MOVED or ASK is
-- followed once.
function _M:membership(sid, group_id, with_signature, extra)
    local groups_key = self:groups_key(sid)
    local signature_key = with_signature and self:signature_key(sid) or nil
    return on_primary(self.redis, groups_key, ask, groups_key, signature_key,
                      group_id, extra)
end


-- The refresh script's keys (scripts/refresh.lua: data, signature,
-- groups), as bulk strings.
function _M:refresh_keys(sid)
    return bulk(self:data_key(sid)) .. bulk(self:signature_key(sid))
           .. bulk(self:groups_key(sid))
end


-- The refresh script's shape: how many keys, and the arguments after the
-- session id (bulk strings) and their count. None on v1: the script
-- raises the user's index itself, in the same slot.
function _M.refresh_shape()
    return 3, "", 0
end


-- The 0.1.x API's reads, on the caller's connection `conn` -----------------

-- The stored signature (ngx.null: none), or nil and an error.
function _M:stored_signature(conn, sid)
    local stored, err = conn:get(self:signature_key(sid))
    if not stored then
        return nil, "redis error: " .. tostring(err)
    end
    return stored
end


-- true or false, or nil and an error.
function _M:is_member(conn, sid, group_id)
    local member, err = conn:sismember(self:groups_key(sid), group_id)
    if not member then
        return nil, "redis error: " .. tostring(err)
    end
    return member == 1
end


-- The session's group ids (empty when none), or nil and an error.
function _M:group_list(conn, sid)
    local groups, err = conn:smembers(self:groups_key(sid))
    if not groups then
        return nil, "redis error: " .. tostring(err)
    end
    return groups
end


-- The session data as a table, or nil and an error ("no session data"
-- when there is none). Data that is not a JSON object counts as an empty
-- session (PROTOCOL.md section 3): logged, never raised.
function _M:session_data(conn, sid)
    if not cjson then
        return nil, "get_data needs lua-cjson"
    end
    local raw, err = conn:get(self:data_key(sid))
    if not raw then
        return nil, "redis error: " .. tostring(err)
    end
    if raw == ngx_null then
        return nil, "no session data"
    end
    local data = type(raw) == "string" and find(raw, "^%s*{")
                 and cjson.decode(raw)
    if type(data) ~= "table" then
        ngx_log(WARN, "shared_session: session data is not a JSON object,",
                " treated as empty (session ", session_hint(sid), ")")
        return {}
    end
    return data
end


return _M
