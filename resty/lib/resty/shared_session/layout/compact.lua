-- resty.shared_session.layout.compact: the compact key layout (PROTOCOL.md
-- section 15): a session is one string key, <prefix>:{<sid>}, whose value
-- is the signature then the JSON (read by compact.parse, the one reader of
-- such a value). The membership query is one GET of it. Section 13 as on
-- the cluster layout: the user's index is raised in a second step, and the
-- mark and generations only ever rise.

local base = require "resty.shared_session.layout.base"
local compact = require "resty.shared_session.compact"
local redis = require "resty.shared_session.redis"
local resp = require "resty.shared_session.resp"
local log = require "resty.shared_session.log"

local ngx = ngx
local ngx_log = ngx.log
local ngx_null = ngx.null
local WARN = ngx.WARN

local pairs = pairs
local tostring = tostring
local setmetatable = setmetatable
local find = string.find
local sort = table.sort

local parse = compact.parse
local on_primary = redis.on_primary
local get_all = redis.get_all
local bulk = resp.bulk
local session_hint = log.session_hint


local _M = setmetatable({ _VERSION = "0.1.0", CONTROLS_ONLY_RISE = true },
                        { __index = base })
local mt = { __index = _M }
_M.mt = mt

local CLUSTER = bulk("cluster")


-- The keyspace of `prefix` on the topology `r`.
function _M.new(prefix, r, check)
    if find(prefix, "[{}]") then
        check.error("key_prefix", "must hold no { or } with key_layout"
                    .. ' "compact" (the session id is the hash tag)')
    end
    if not compact.has_cjson then
        check.error("key_layout", '"compact" needs lua-cjson (cjson.safe)')
    end
    return setmetatable(base.fields(prefix, r), mt)
end


-- <prefix>:{<sid>}: the session's one key.
function _M:session_key(sid)
    return self.prefix .. ":{" .. sid .. "}"
end


-- What a reader finds in the value (section 15): the signature, groups and
-- data; nil when absent or malformed (a malformed one logged: no session
-- to a reader, a writer deletes it).
local function read(value, sid)
    local signature, groups, data = parse(value)
    if not signature and value ~= ngx_null then
        ngx_log(WARN, "shared_session: malformed session value, treated"
                .. " as no session (session ", session_hint(sid), ")")
    end
    return signature, groups, data
end


-- One GET of the session's key, and of the `extra` keys, and its PTTL, in
-- the same round trip. Returns what v1's membership returns: 1 or 0 as
-- SISMEMBER would answer, nil, the signature the value holds (with
-- `with_signature`; ngx.null when there is no session), the extra replies,
-- the PTTL reply.
function _M:membership(sid, group_id, with_signature, extra)
    local k = self:session_key(sid)
    local keys = { k }
    local n = extra and #extra or 0
    for i = 1, n do
        keys[i + 1] = extra[i]
    end
    local replies, err = on_primary(self.redis, k, get_all, keys, k)
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
    local pttl = replies[n + 2]
    local signature, groups = read(replies[1], sid)
    if not signature then
        return 0, nil, with_signature and ngx_null or nil, extra_replies,
               pttl
    end
    return groups[tostring(group_id)] and 1 or 0, nil,
           with_signature and signature or nil, extra_replies, pttl
end


-- The refresh script's one key.
function _M:refresh_keys(sid)
    return bulk(self:session_key(sid))
end


-- One key, and "cluster" after the session id (section 14.1's second step).
function _M.refresh_shape()
    return 1, CLUSTER, 1
end


-- The 0.1.x API's reads, on the caller's connection `conn` -----------------

-- The value read: signature, groups, data; nil and "no session", or nil
-- and an error.
local function session(self, conn, sid)
    local raw, err = conn:get(self:session_key(sid))
    if not raw then
        return nil, "redis error: " .. tostring(err)
    end
    local sig, groups, data = read(raw, sid)
    if not sig then
        return nil, "no session"
    end
    return sig, groups, data
end


-- The signature the value holds (ngx.null: no session), or nil and an
-- error.
function _M:stored_signature(conn, sid)
    local sig, err = session(self, conn, sid)
    if not sig and err == "no session" then
        return ngx_null
    end
    return sig, err
end


-- true or false, or nil and an error.
function _M:is_member(conn, sid, group_id)
    local sig, groups = session(self, conn, sid)
    if not sig then
        if groups == "no session" then
            return false
        end
        return nil, groups
    end
    return groups[tostring(group_id)] == true
end


-- The session's group ids, sorted (empty for no session, as SMEMBERS
-- answers), or nil and an error.
function _M:group_list(conn, sid)
    local sig, set = session(self, conn, sid)
    if not sig then
        if set == "no session" then
            return {}
        end
        return nil, set
    end
    local list = {}
    for g in pairs(set) do
        list[#list + 1] = g
    end
    sort(list)
    return list
end


-- The session data, or nil and "no session data", or nil and an error.
function _M:session_data(conn, sid)
    local sig, why, data = session(self, conn, sid)
    if not sig then
        return nil, why == "no session" and "no session data" or why
    end
    return data
end


return _M
