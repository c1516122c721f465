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

local ngx = ngx
local ngx_var = ngx.var
local ngx_null = ngx.null

local type = type
local pcall = pcall
local require = require
local tostring = tostring
local setmetatable = setmetatable

local cookie_from_header = cookie.from_header
local parse_cookie = cookie.parse
local verify_locally = cookie.verify
local equals_constant_time = cookie.equals_constant_time

local DEFAULT_COOKIE_NAME = config.DEFAULT_COOKIE_NAME
local DEFAULT_KEY_PREFIX = config.DEFAULT_KEY_PREFIX
-- Without configure(): the v1 layout (PROTOCOL.md section 3) on one Redis,
-- as 0.1.x read it (only the key names serve: the caller's connection
-- is used).
local DEFAULT_KEYSPACE = config.default_keyspace()


-- Optional: only get_data() needs it.
local has_cjson = (pcall(require, "cjson.safe"))


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
        -- The configured key layout (v1, cluster or compact) under this
        -- prefix: it names the keys and reads them.
        keyspace = (conf and conf.keyspace or DEFAULT_KEYSPACE)
                   :with_prefix(key_prefix),
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


-- true, or nil and an error. Local HMAC check when configure() was given a
-- secret, else a comparison with the signature the layout stores
-- (<prefix>:signature:<sid>; compact layout: the value's first 27 bytes).
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
    stored, err = self.keyspace:stored_signature(self.redis_conn, self.sid)
    if not stored then
        return nil, err
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

    local member
    member, err = self.keyspace:is_member(self.redis_conn, self.sid, group_id)
    if member == nil then
        return nil, err
    end
    if member then
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

    return self.keyspace:group_list(self.redis_conn, self.sid)
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
    if not has_cjson then
        return nil, "get_data needs lua-cjson"
    end

    local ok, err = check_session(self)
    if not ok then
        return nil, err
    end
    return self.keyspace:session_data(self.redis_conn, self.sid)
end


function _M.get_cookie_signature(self)
    return self.signature
end


function _M.get_cookie_raw(self)
    return self.cookie
end


return _M
