-- resty.shared_session.compat: the 0.1.x session API of
-- flask-resty-shared-session (2017): a session object for the request's
-- cookie, on a Redis connection the caller manages. resty.shared_session
-- exports these functions under their 0.1.x names and makes them the methods
-- of its sessions.
--
-- `conf` is the configuration in force (nil when configure() was not
-- called); it is read at each call, as it always was.

local cookie = require "resty.shared_session.cookie"
local config = require "resty.shared_session.config"
local redis = require "resty.shared_session.redis"
local compact = require "resty.shared_session.compact"
local log = require "resty.shared_session.log"

local ngx = ngx
local ngx_var = ngx.var
local ngx_log = ngx.log
local ngx_null = ngx.null
local WARN = ngx.WARN

local type = type
local pcall = pcall
local require = require
local tostring = tostring
local setmetatable = setmetatable
local find = string.find
local sort = table.sort
local pairs = pairs

local cookie_from_header = cookie.from_header
local parse_cookie = cookie.parse
local verify_locally = cookie.verify
local equals_constant_time = cookie.equals_constant_time
local redis_key = redis.key
local compact_key = compact.key
local parse_compact = compact.parse
local sid_hint = log.sid_hint

local DEFAULT_COOKIE_NAME = config.DEFAULT_COOKIE_NAME
local DEFAULT_KEY_PREFIX = config.DEFAULT_KEY_PREFIX


-- Optional: only get_data() needs it.
local cjson
do
    local ok, mod = pcall(require, "cjson.safe")
    if ok then
        cjson = mod
    end
end


local _M = { _VERSION = "0.1.0" }


-- Returns a session for the request's cookie (found by PROTOCOL.md section
-- 10), with metatable `mt`, or nil and an error when there is no such cookie.
-- A malformed cookie, or a Cookie header the grammar refuses, still gives a
-- session, whose methods all fail: callers written for 0.1.x answer 403 to
-- it, as the protocol requires.
function _M.new(conf, mt, redis_conn, cookie_name, key_prefix)
    cookie_name = cookie_name or (conf and conf.cookie_name)
                  or DEFAULT_COOKIE_NAME
    key_prefix = key_prefix or (conf and conf.key_prefix) or DEFAULT_KEY_PREFIX

    local value, refused = cookie_from_header(ngx_var.http_cookie, cookie_name)
    if value == nil and not refused then
        return nil, "no session cookie"
    end

    local sid, sig
    if refused then
        sig = refused
    else
        sid, sig = parse_cookie(value)
    end
    return setmetatable({
        -- PROTOCOL.md section 15: the configured layout is the compact
        -- one (the v1 names are read otherwise, on the cluster layout too).
        compact = conf and conf.redis.key_layout == "compact" or nil,
        redis_conn = redis_conn,
        key_prefix = key_prefix,
        cookie = value,
        sid = sid,
        signature = sid and sig or nil,
        malformed = not sid and sig or nil,
    }, mt)
end


local function check_session(self)
    if not self.sid then
        return nil, "malformed cookie: " .. tostring(self.malformed)
    end
    if not self.redis_conn then
        return nil, "no redis connection"
    end
    return true
end


-- The compact layout (PROTOCOL.md section 15): the session's one value,
-- read by compact.parse: its signature, groups (a set) and data; nil and
-- "no session" when it is absent or malformed, nil and an error when Redis
-- fails.
local function compact_session(self)
    local raw, err = self.redis_conn:get(compact_key(self.key_prefix,
                                                     self.sid))
    if not raw then
        return nil, "redis error: " .. tostring(err)
    end
    local sig, groups, data = parse_compact(raw)
    if not sig then
        if raw ~= ngx_null then
            ngx_log(WARN, "shared_session: malformed session value, treated",
                    " as no session (sid ", sid_hint(self.sid), ")")
        end
        return nil, "no session"
    end
    return sig, groups, data
end


-- true, or nil and an error. Local HMAC check when configure() was given a
-- secret, else a comparison with <prefix>:signature:<sid> (compact layout:
-- the value's first 27 bytes).
function _M.verify_signature(self, conf)
    if not self.sid then
        return nil, "malformed cookie: " .. tostring(self.malformed)
    end

    if conf and conf.keys then
        if verify_locally(conf.keys, self.sid, self.signature) then
            return true
        end
        return nil, "bad signature"
    end

    local ok, err = check_session(self)
    if not ok then
        return nil, err
    end

    local stored
    if self.compact then
        stored, err = compact_session(self)
        if not stored then
            return nil, err == "no session" and "no stored signature" or err
        end
    else
        stored, err = self.redis_conn:get(redis_key(self.key_prefix,
                                                    "signature", self.sid))
    end
    if not stored then
        return nil, "redis error: " .. tostring(err)
    end
    if stored == ngx_null then
        return nil, "no stored signature"
    end
    if type(stored) == "string"
       and equals_constant_time(self.signature, stored)
    then
        return true
    end
    return nil, "bad signature"
end


-- true, or nil and an error ("not a member" when Redis says no).
function _M.is_group_member(self, group_id)
    local ok, err = check_session(self)
    if not ok then
        return nil, err
    end
    if type(group_id) ~= "string" and type(group_id) ~= "number" then
        return nil, "group id must be a string"
    end

    if self.compact then
        local sig, groups = compact_session(self)
        if not sig then
            return nil, groups == "no session" and "not a member" or groups
        end
        if groups[tostring(group_id)] then
            return true
        end
        return nil, "not a member"
    end

    local member
    member, err = self.redis_conn:sismember(
        redis_key(self.key_prefix, "groups", self.sid), group_id)
    if not member then
        return nil, "redis error: " .. tostring(err)
    end
    if member == 1 then
        return true
    end
    return nil, "not a member"
end


-- The session's group ids (an empty list when it has none), or nil and an
-- error.
function _M.list_groups(self)
    local ok, err = check_session(self)
    if not ok then
        return nil, err
    end

    if self.compact then
        local sig, set = compact_session(self)
        if not sig then
            if set == "no session" then
                return {}       -- as SMEMBERS answers for no session
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

    local groups
    groups, err = self.redis_conn:smembers(
        redis_key(self.key_prefix, "groups", self.sid))
    if not groups then
        return nil, "redis error: " .. tostring(err)
    end
    return groups
end


function _M.get_sid(self)
    if not self.sid then
        return nil, "malformed cookie: " .. tostring(self.malformed)
    end
    return self.sid
end


-- The session data as a Lua table. Data that is not a JSON object counts as an
-- empty session (PROTOCOL.md section 3): logged, never raised.
function _M.get_data(self)
    if not cjson then
        return nil, "get_data needs lua-cjson"
    end

    local ok, err = check_session(self)
    if not ok then
        return nil, err
    end

    if self.compact then
        local sig, why, data = compact_session(self)
        if not sig then
            return nil, why == "no session" and "no session data" or why
        end
        return data
    end

    local raw
    raw, err = self.redis_conn:get(redis_key(self.key_prefix, "data", self.sid))
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
                " treated as empty (sid ", sid_hint(self.sid), ")")
        return {}
    end
    return data
end


function _M.get_cookie_signature(self)
    return self.signature
end


function _M.get_cookie_raw(self)
    return self.cookie
end


return _M
