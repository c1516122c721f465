-- resty.shared_session: the nginx side of the shared-session protocol (v1).
--
-- Reads the session cookie that a Flask (flask-resty-shared-session) or NestJS
-- application signed, checks its signature (locally with the shared secret, or
-- against the copy the application stored in Redis), and asks Redis whether the
-- session belongs to a group. The byte formats are those of PROTOCOL.md; the
-- README documents every option.

local bit = require "bit"

local ngx = ngx
local ngx_var = ngx.var
local ngx_log = ngx.log
local ngx_exit = ngx.exit
local ngx_null = ngx.null
local hmac_sha1 = ngx.hmac_sha1
local encode_base64 = ngx.encode_base64
local ERR = ngx.ERR
local WARN = ngx.WARN
local INFO = ngx.INFO

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local error = error
local require = require
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local byte = string.byte
local sub = string.sub
local find = string.find
local gsub = string.gsub
local format = string.format
local floor = math.floor
local bxor = bit.bxor
local bor = bit.bor


-- The same library is `resty.redis` on OpenResty and `nginx.redis` on Debian.
local redis_lib, redis_load_err
do
    local ok, mod = pcall(require, "resty.redis")
    if not ok then
        ok, mod = pcall(require, "nginx.redis")
    end
    if ok then
        redis_lib = mod
    else
        redis_load_err = "no redis client library (resty.redis or nginx.redis)"
    end
end

-- Optional: only get_data() needs it.
local cjson
do
    local ok, mod = pcall(require, "cjson.safe")
    if ok then
        cjson = mod
    end
end


local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }


local MAX_COOKIE_LEN = 256
local SID_MIN_LEN = 16
local SID_MAX_LEN = 128
local SIG_LEN = 27
local LOG_SID_CHARS = 6

local DEFAULT_SALT = "flask-resty-session"
local DEFAULT_COOKIE_NAME = "session"
local DEFAULT_KEY_PREFIX = "resty_shared_session"

local REDIS_DEFAULTS = {
    host = "127.0.0.1",
    port = 6379,
    db = 0,
    password = false,           -- false: no AUTH
    connect_timeout = 200,      -- ms
    read_timeout = 500,         -- ms, also used for sending
    pool_size = 64,             -- idle connections kept per worker
    keepalive_timeout = 60000,  -- ms an idle pooled connection is kept
}

local TOP_LEVEL_OPTIONS = {
    secret = true, secret_fallbacks = true, salt = true,
    cookie_name = true, key_prefix = true, redis = true,
}

local BASE64URL = { ["+"] = "-", ["/"] = "_" }


-- The configuration set once by configure() (in init_by_lua, before the
-- workers fork); never written by a request.
local config


-- Pure helpers ---------------------------------------------------------------

-- Splits a cookie value into session id and signature, or returns nil and the
-- reason. Strict on purpose (PROTOCOL.md sections 1 and 2): the size cap comes
-- first so that no work is done on oversized input.
local function parse_cookie(value)
    if type(value) ~= "string" then
        return nil, "cookie value is not a string"
    end

    local len = #value
    if len > MAX_COOKIE_LEN then
        return nil, "cookie longer than " .. MAX_COOKIE_LEN .. " bytes"
    end

    if len == 0 then
        return nil, "empty cookie"
    end

    if find(value, "[^A-Za-z0-9_.-]") then
        return nil, "invalid character in cookie"
    end

    local dot = find(value, ".", 1, true)
    if not dot then
        return nil, "no separator in cookie"
    end

    if find(value, ".", dot + 1, true) then
        return nil, "more than one separator in cookie"
    end

    local sid_len = dot - 1
    if sid_len < SID_MIN_LEN or sid_len > SID_MAX_LEN then
        return nil, "session id is not 16 to 128 characters"
    end

    if len - dot ~= SIG_LEN then
        return nil, "signature is not " .. SIG_LEN .. " characters"
    end

    return sub(value, 1, sid_len), sub(value, dot + 1)
end
_M.parse_cookie = parse_cookie


-- Compares two strings in time that depends only on the length of `given`:
-- every byte is visited, differences are accumulated, there is no early exit.
local function equals_constant_time(given, expected)
    local given_len = #given
    local diff = given_len == #expected and 0 or 1
    for i = 1, given_len do
        diff = bor(diff, bxor(byte(given, i), byte(expected, i) or 0))
    end
    return diff == 0
end
_M.equals_constant_time = equals_constant_time


-- itsdangerous Signer, key_derivation "hmac", SHA-1:
-- derived_key = HMAC(secret, salt); sig = base64url(HMAC(derived_key, sid)).
local function derive_key(secret, salt)
    return hmac_sha1(secret, salt)
end


local function signature_for(derived_key, sid)
    return (gsub(encode_base64(hmac_sha1(derived_key, sid), true), "[+/]",
                 BASE64URL))
end


local function verify_locally(keys, sid, sig)
    for i = 1, #keys do
        if equals_constant_time(sig, signature_for(keys[i], sid)) then
            return true
        end
    end
    return false
end


local function redis_key(prefix, kind, sid)
    return prefix .. ":" .. kind .. ":" .. sid
end


-- What a log line may say about a session: the first few characters only.
local function sid_hint(sid)
    if not sid then
        return "-"
    end
    return sub(sid, 1, LOG_SID_CHARS) .. "..."
end


local function group_hint(group_id)
    if type(group_id) ~= "string" then
        return tostring(group_id)
    end
    return (gsub(sub(group_id, 1, 64), "[^A-Za-z0-9_.:@/-]", "?"))
end


-- Configuration ----------------------------------------------------------

local function option_error(name, message)
    -- Level 0: the message names the option; a file position would only point
    -- at this module.
    error("shared_session.configure: option \"" .. name .. "\" " .. message, 0)
end


local function check_non_empty_string(name, value)
    if type(value) ~= "string" or value == "" then
        option_error(name, "must be a non-empty string")
    end
end


local function check_number(name, value, min, integer)
    local n = value
    if type(n) == "string" then
        n = tonumber(n)
    end
    if type(n) ~= "number" or n ~= n then
        option_error(name, "must be a number")
    end
    if integer and n ~= floor(n) then
        option_error(name, "must be an integer")
    end
    if n < min then
        option_error(name, min == 1 and "must be positive"
                           or "must be at least " .. min)
    end
    return n
end


local function check_redis_options(opts)
    if opts == nil then
        opts = {}
    elseif type(opts) ~= "table" then
        option_error("redis", "must be a table")
    end

    for k in pairs(opts) do
        if REDIS_DEFAULTS[k] == nil then
            option_error("redis." .. tostring(k), "is unknown")
        end
    end

    local r = {}
    for k, default in pairs(REDIS_DEFAULTS) do
        local v = opts[k]
        if v == nil then
            v = default
        end
        r[k] = v
    end

    check_non_empty_string("redis.host", r.host)
    r.port = check_number("redis.port", r.port, 1, true)
    if r.port > 65535 then
        option_error("redis.port", "must be at most 65535")
    end
    r.db = check_number("redis.db", r.db, 0, true)
    if r.password ~= false then
        check_non_empty_string("redis.password", r.password)
    end
    r.connect_timeout = check_number("redis.connect_timeout",
                                     r.connect_timeout, 1)
    r.read_timeout = check_number("redis.read_timeout", r.read_timeout, 1)
    r.pool_size = check_number("redis.pool_size", r.pool_size, 1, true)
    r.keepalive_timeout = check_number("redis.keepalive_timeout",
                                       r.keepalive_timeout, 1)

    -- One pool per server and database, so that a pooled connection never
    -- serves a request that expects another database.
    r.connect_options = {
        pool = format("shared_session:%s:%d:%d", r.host, r.port, r.db),
        pool_size = r.pool_size,
    }
    return r
end


-- Validates every option, derives the HMAC keys once, and only then replaces
-- the configuration: a failed call leaves the previous one in force.
function _M.configure(opts)
    if type(opts) ~= "table" then
        error("shared_session.configure: options must be a table", 0)
    end

    for k in pairs(opts) do
        if not TOP_LEVEL_OPTIONS[k] then
            option_error(tostring(k), "is unknown")
        end
    end

    local salt = opts.salt
    if salt == nil then
        salt = DEFAULT_SALT
    end
    check_non_empty_string("salt", salt)

    local cookie_name = opts.cookie_name
    if cookie_name == nil then
        cookie_name = DEFAULT_COOKIE_NAME
    end
    -- An RFC 6265 token, which is also safe as part of an nginx variable name.
    if type(cookie_name) ~= "string" or #cookie_name > 64
       or not find(cookie_name, "^[A-Za-z0-9!#$%%&'*+.^_`|~-]+$")
    then
        option_error("cookie_name", "must be 1 to 64 characters of an RFC 6265"
                                    .. " token")
    end

    local key_prefix = opts.key_prefix
    if key_prefix == nil then
        key_prefix = DEFAULT_KEY_PREFIX
    end
    if type(key_prefix) ~= "string" or #key_prefix > 64
       or not find(key_prefix, "^[A-Za-z0-9_.:{}-]+$")
    then
        option_error("key_prefix", "must be 1 to 64 characters of"
                                   .. " [A-Za-z0-9_.:{}-]")
    end

    local keys
    if opts.secret ~= nil then
        check_non_empty_string("secret", opts.secret)
        keys = { opts.secret }
    end

    local fallbacks = opts.secret_fallbacks
    if fallbacks ~= nil then
        if type(fallbacks) ~= "table" then
            option_error("secret_fallbacks", "must be a list of strings")
        end
        if not keys then
            option_error("secret_fallbacks", "needs \"secret\" as well")
        end
        local n = #fallbacks
        for k in pairs(fallbacks) do
            if type(k) ~= "number" or k < 1 or k > n or k ~= floor(k) then
                option_error("secret_fallbacks", "must be a list of strings")
            end
        end
        for i, s in ipairs(fallbacks) do
            check_non_empty_string("secret_fallbacks[" .. i .. "]", s)
            keys[#keys + 1] = s
        end
    end

    local redis = check_redis_options(opts.redis)

    if keys then
        for i = 1, #keys do
            keys[i] = derive_key(keys[i], salt)
        end
    end

    config = {
        keys = keys,            -- derived keys, current first; nil: stored mode
        cookie_name = cookie_name,
        cookie_var = "cookie_" .. cookie_name,
        key_prefix = key_prefix,
        redis = redis,
    }
    return true
end


-- Redis ------------------------------------------------------------------

-- The one place that opens a connection: a later Sentinel or cluster change
-- swaps this function (and release_redis) and nothing else.
local function connect_redis(r)
    if not redis_lib then
        return nil, redis_load_err
    end

    local red, err = redis_lib:new()
    if not red then
        return nil, err
    end

    red:set_timeout(r.connect_timeout)
    local ok
    ok, err = red:connect(r.host, r.port, r.connect_options)
    if not ok then
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


local function release_redis(red, r)
    local ok, err = red:set_keepalive(r.keepalive_timeout, r.pool_size)
    if not ok then
        ngx_log(INFO, "shared_session: redis connection not pooled: ", err)
    end
end


-- commit_pipeline() reports a command's error as { false, message }.
local function pipeline_error(res)
    if type(res) == "table" and res[1] == false then
        return tostring(res[2])
    end
end


-- The one-call check (PROTOCOL.md section 5) ----------------------------------

local function refuse(status, level, reason, sid, group_id)
    ngx_log(level, "shared_session: ", status, " ", reason, " (sid ",
            sid_hint(sid), ", group ", group_hint(group_id), ")")
    return status, reason
end


-- Returns 200 when the request's session is a member of group_id, else 401
-- (no cookie), 403 (malformed, forged, not a member, expired or destroyed) or
-- 503 (Redis unreachable or failing), and a short reason.
function _M.authorize(group_id)
    local conf = config
    if not conf then
        return refuse(503, ERR, "configure() was not called")
    end

    if (type(group_id) ~= "string" and type(group_id) ~= "number")
       or group_id == ""
    then
        return refuse(403, WARN, "no group id given")
    end

    local cookie = ngx_var[conf.cookie_var]
    if cookie == nil then
        return refuse(401, INFO, "no session cookie", nil, group_id)
    end

    local sid, sig = parse_cookie(cookie)
    if not sid then
        return refuse(403, WARN, "malformed cookie: " .. sig, nil, group_id)
    end

    local keys = conf.keys
    if keys and not verify_locally(keys, sid, sig) then
        return refuse(403, WARN, "bad signature", sid, group_id)
    end

    local r = conf.redis
    local red, err = connect_redis(r)
    if not red then
        return refuse(503, ERR, "redis unavailable: " .. err, sid, group_id)
    end

    local prefix = conf.key_prefix
    local groups_key = redis_key(prefix, "groups", sid)
    local member, stored

    if keys then
        member, err = red:sismember(groups_key, group_id)

    else
        -- Stored mode: fetch the signature and ask for membership in one round
        -- trip; the answer is used only if the signature matches.
        red:init_pipeline(2)
        red:get(redis_key(prefix, "signature", sid))
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
        return refuse(503, ERR, "redis error: " .. err, sid, group_id)
    end

    release_redis(red, r)

    if not keys then
        if stored == ngx_null then
            return refuse(403, INFO, "no stored signature (expired or"
                                     .. " destroyed)", sid, group_id)
        end
        if type(stored) ~= "string"
           or not equals_constant_time(sig, stored)
        then
            return refuse(403, WARN, "bad signature", sid, group_id)
        end
    end

    if member == 1 then
        return 200
    end
    if member == 0 then
        return refuse(403, INFO, "not a member of the group", sid, group_id)
    end
    return refuse(503, ERR, "unexpected redis reply to SISMEMBER", sid,
                  group_id)
end


-- For access_by_lua: ends the request with the status unless it is 200.
function _M.access(group_id)
    local status = _M.authorize(group_id)
    if status ~= 200 then
        return ngx_exit(status)
    end
    return status
end


-- The 0.1.x API (flask-resty-shared-session 2017) -----------------------------

-- Returns a session for the request's cookie, or nil and an error when there is
-- no such cookie. A malformed cookie still gives a session, whose methods all
-- fail: callers written for 0.1.x answer 403 to it, as the protocol requires.
function _M.new(_, redis_conn, cookie_name, key_prefix)
    local conf = config
    cookie_name = cookie_name or (conf and conf.cookie_name)
                  or DEFAULT_COOKIE_NAME
    key_prefix = key_prefix or (conf and conf.key_prefix) or DEFAULT_KEY_PREFIX

    local value = ngx_var["cookie_" .. cookie_name]
    if value == nil then
        return nil, "no session cookie"
    end

    local sid, sig = parse_cookie(value)
    return setmetatable({
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
-- secret, else a comparison with <prefix>:signature:<sid>.
function _M.verify_signature(self)
    if not self.sid then
        return nil, "malformed cookie: " .. tostring(self.malformed)
    end

    local conf = config
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
    stored, err = self.redis_conn:get(redis_key(self.key_prefix, "signature",
                                                self.sid))
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


-- Names kept from 0.1.x.
_M.get_cookie_sid = _M.get_sid
_M.list_allowed_groups = _M.list_groups

function _M.get_cookie_signature(self)
    return self.signature
end

function _M.get_cookie_raw(self)
    return self.cookie
end


return _M
