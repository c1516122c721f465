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
local ngx_now = ngx.now
local ngx_sleep = ngx.sleep
local timer_at = ngx.timer.at
local socket_tcp = ngx.socket.tcp
local thread_spawn = ngx.thread.spawn
local thread_kill = ngx.thread.kill
local worker_id = ngx.worker.id
local worker_pid = ngx.worker.pid
local worker_exiting = ngx.worker.exiting
local hmac_sha1 = ngx.hmac_sha1
local encode_base64 = ngx.encode_base64
local ERR = ngx.ERR
local WARN = ngx.WARN
local NOTICE = ngx.NOTICE
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
local concat = table.concat
local floor = math.floor
local math_min = math.min
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

-- Sentinel support: get_master() from lua-resty-redis-connector's package.
local sentinel_lib
do
    local ok, mod = pcall(require, "resty.redis.sentinel")
    if not ok then
        ok, mod = pcall(require, "nginx.redis.sentinel")
    end
    if ok then
        sentinel_lib = mod
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
    sentinels = false,          -- { { host =, port = }, ... }: ask them for
    master_name = "mymaster",   -- the primary of master_name instead
    connect_timeout = 200,      -- ms
    read_timeout = 500,         -- ms, also used for sending
    pool_size = 64,             -- idle connections kept per worker
    keepalive_timeout = 60000,  -- ms an idle pooled connection is kept
}

local TOP_LEVEL_OPTIONS = {
    secret = true, secret_fallbacks = true, salt = true,
    cookie_name = true, key_prefix = true, redis = true,
    decision_cache = true,
}

local DECISION_CACHE_DEFAULTS = {
    dict = false,               -- required: a lua_shared_dict name
    ttl = 1,                    -- s a positive decision is kept, at most
}
local DECISION_TTL_MIN = 0.001  -- the dict's expiry resolution (ms)
local DECISION_TTL_MAX = 10

-- The revocation subscriber (PROTOCOL.md section 7).
local PING_INTERVAL = 0.25         -- s between PINGs on the subscription
local SUBSCRIBER_READ_TIMEOUT = 750 -- ms without any reply (3 PINGs): down
local HEARTBEAT_TTL = 1             -- s the epoch key outlives the last reply
local BACKOFF_MIN = 0.1             -- s before the first reconnection
local BACKOFF_MAX = 2               -- s between reconnections, at most
local SLEEP_SLICE = 0.1             -- s: exiting() is checked this often


-- The bytes a cookie value may hold: [A-Za-z0-9_.-].
local COOKIE_BYTES = {}
for c = 0, 255 do
    local ch = string.char(c)
    COOKIE_BYTES[c] = find(ch, "^[A-Za-z0-9_.-]$") ~= nil
end


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

    -- A byte loop, not find(value, "[^A-Za-z0-9_.-]"): LuaJIT compiles it,
    -- and it runs on every request (a pattern find cost ~1 us of ~4).
    for i = 1, len do
        if not COOKIE_BYTES[byte(value, i)] then
            return nil, "invalid character in cookie"
        end
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


-- The url-safe alphabet's byte for each byte of the standard one.
local URL_SAFE_BYTE = {}
for c = 0, 255 do
    URL_SAFE_BYTE[c] = c
end
URL_SAFE_BYTE[byte("+")] = byte("-")
URL_SAFE_BYTE[byte("/")] = byte("_")


-- equals_constant_time(sig, base64url(HMAC(derived_key, sid))), without
-- building the url-safe string: the standard encoding is translated byte by
-- byte inside the comparison (a gsub cost as much as the rest of a cache hit).
local function signature_matches(derived_key, sid, sig)
    local std = encode_base64(hmac_sha1(derived_key, sid), true)
    local len = #sig
    local diff = len == #std and 0 or 1
    for i = 1, len do
        diff = bor(diff, bxor(byte(sig, i), URL_SAFE_BYTE[byte(std, i) or 0]))
    end
    return diff == 0
end


local function verify_locally(keys, sid, sig)
    for i = 1, #keys do
        if signature_matches(keys[i], sid, sig) then
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


-- A string of 1 to 64 characters matching `pattern`, or `default` when nil.
local function check_pattern(name, value, default, pattern, what)
    if value == nil then
        value = default
    end
    if type(value) ~= "string" or #value > 64 or not find(value, pattern) then
        option_error(name, "must be 1 to 64 characters of " .. what)
    end
    return value
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

    if r.sentinels ~= false then
        if type(r.sentinels) ~= "table" or #r.sentinels == 0 then
            option_error("redis.sentinels", "must be a list of { host, port }")
        end
        for i, sentinel in ipairs(r.sentinels) do
            local name = "redis.sentinels[" .. i .. "]"
            if type(sentinel) ~= "table" then
                option_error(name, "must be a table { host =, port = }")
            end
            check_non_empty_string(name .. ".host", sentinel.host)
            sentinel.port = check_number(name .. ".port", sentinel.port, 1,
                                         true)
        end
        check_non_empty_string("redis.master_name", r.master_name)
        if not sentinel_lib then
            option_error("redis.sentinels", "need lua-resty-redis-connector"
                         .. " (resty.redis.sentinel)")
        end
    end

    -- One pool per server and database, so that a pooled connection never
    -- serves a request that expects another database or another server.
    r.connect_options = {
        pool = format("shared_session:%s:%d:%d", r.host, r.port, r.db),
        pool_size = r.pool_size,
    }
    return r
end


local config_seq = 0   -- counts configure() calls, for config_id

-- The decision cache: nil when the option is absent. The dict must exist
-- already (configure runs in init_by_lua, after lua_shared_dict is parsed).
local function check_decision_cache_options(opts, key_prefix, redis)
    if opts == nil then
        return nil
    end
    if type(opts) ~= "table" then
        option_error("decision_cache", "must be a table")
    end

    for k in pairs(opts) do
        if DECISION_CACHE_DEFAULTS[k] == nil then
            option_error("decision_cache." .. tostring(k), "is unknown")
        end
    end

    local name = opts.dict
    check_non_empty_string("decision_cache.dict", name)
    local shared = ngx.shared
    local dict = shared and shared[name]
    if not dict then
        option_error("decision_cache.dict", "must name a lua_shared_dict"
                     .. " (none is called \"" .. group_hint(name) .. "\")")
    end

    local ttl = opts.ttl
    if ttl == nil then
        ttl = DECISION_CACHE_DEFAULTS.ttl
    elseif type(ttl) == "string" then
        ttl = tonumber(ttl)
    end
    if type(ttl) ~= "number" or ttl ~= ttl or ttl < DECISION_TTL_MIN
       or ttl > DECISION_TTL_MAX
    then
        option_error("decision_cache.ttl", "must be a number of seconds from "
                     .. DECISION_TTL_MIN .. " to " .. DECISION_TTL_MAX)
    end

    config_seq = config_seq + 1
    return {
        dict = dict,
        dict_name = name,
        ttl = ttl,
        -- Decisions are made under one configuration (its secrets): a new
        -- configure(), such as a reload that drops a secret, starts afresh
        -- even though the dict outlives the reload.
        config_id = format("%x.%x.%x", worker_pid(), floor(ngx_now() * 1000),
                           config_seq),
        channel = key_prefix .. ":invalidate",
        -- Its own pool name, never handed back: the subscriber's connection
        -- is never a pooled one, and never taken from a pool either.
        subscriber_connect_options = {
            pool = format("shared_session:subscriber:%s:%d", redis.host,
                          redis.port),
        },
    }
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

    -- An RFC 6265 token, which is also safe as part of an nginx variable name.
    local cookie_name = check_pattern("cookie_name", opts.cookie_name,
        DEFAULT_COOKIE_NAME, "^[A-Za-z0-9!#$%%&'*+.^_`|~-]+$",
        "an RFC 6265 token")
    local key_prefix = check_pattern("key_prefix", opts.key_prefix,
        DEFAULT_KEY_PREFIX, "^[A-Za-z0-9_.:{}-]+$", "[A-Za-z0-9_.:{}-]")

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
    local decision_cache = check_decision_cache_options(opts.decision_cache,
                                                        key_prefix, redis)

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
        decision_cache = decision_cache,    -- nil: every check asks Redis
    }
    return true
end


-- Redis ------------------------------------------------------------------

-- With Sentinel: the primary the sentinels name, remembered by this worker
-- for MASTER_TTL seconds (and forgotten at once when it cannot be reached), so
-- that a check costs one round trip, not three. Not request state: every
-- request of the worker may share it.
local MASTER_TTL = 1
local known_master      -- { host =, port =, connect_options =, at = }

local function forget_master()
    known_master = nil
end


local function ask_sentinels(r)
    local last_err = "no sentinel answered"
    for _, sentinel in ipairs(r.sentinels) do
        local red = redis_lib:new()
        red:set_timeout(r.connect_timeout)
        local ok, err = red:connect(sentinel.host, sentinel.port)
        if ok then
            red:set_timeout(r.read_timeout)
            local master
            master, err = sentinel_lib.get_master(red, r.master_name)
            if master then
                red:set_keepalive(r.keepalive_timeout, r.pool_size)
                local port = tonumber(master.port)
                return {
                    host = master.host, port = port, at = ngx_now(),
                    connect_options = {
                        pool = format("shared_session:%s:%d:%d", master.host,
                                      port, r.db),
                        pool_size = r.pool_size,
                    },
                }
            end
            red:close()
        end
        last_err = format("sentinel %s:%d: %s", sentinel.host, sentinel.port,
                          tostring(err or "no master known"))
    end
    return nil, last_err
end


-- Where the sessions are: the configured server, or the primary that the
-- sentinels name.
local function redis_address(r)
    if not r.sentinels then
        return r.host, r.port, r.connect_options
    end
    local master = known_master
    if not master or ngx_now() - master.at > MASTER_TTL then
        local err
        master, err = ask_sentinels(r)
        if not master then
            return nil, err
        end
        known_master = master
    end
    return master.host, master.port, master.connect_options
end


-- The one place that opens a connection for the checks.
local function connect_redis(r)
    if not redis_lib then
        return nil, redis_load_err
    end

    local host, port, connect_options = redis_address(r)
    if not host then
        return nil, port
    end

    local red, err = redis_lib:new()
    if not red then
        return nil, err
    end

    red:set_timeout(r.connect_timeout)
    local ok
    ok, err = red:connect(host, port, connect_options)
    if not ok then
        forget_master()
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


-- Decision cache -------------------------------------------------------------
--
-- Positive decisions ("session S may see group G") kept in a lua_shared_dict
-- for at most `ttl` seconds. Keys (a session id never contains ":" or " ",
-- PROTOCOL.md section 1, so with the sid first no two (sid, group) pairs
-- share a key, whatever the group id holds):
--
--   "e"                the epoch: a token that exists only while the revocation
--                      subscriber is subscribed (it expires HEARTBEAT_TTL after
--                      Redis last answered); a new one at every SUBSCRIBE
--   "s:<sid>"          the session's token; a revocation notice replaces it
--   "d:<sid>:<group>"  a decision: "<epoch> <session token> <signature>"
--
-- A decision counts only while both tokens it was made under (read before its
-- Redis query was sent) are still the current ones, and only for the cookie
-- signature it was made for. Tokens are never reused, so a key that is gone
-- (expired, evicted, deleted) can only make decisions stop matching: eviction
-- causes misses, never an allow. Replacing a token is the only invalidation,
-- and two replacements racing each other both invalidate.

local EPOCH_KEY = "e"
local SPACE = byte(" ")

local token_seq = 0     -- per worker; tokens are unique by (pid, ms, seq)

local function fresh_token()
    token_seq = token_seq + 1
    return format("%x.%x.%x", worker_pid(), floor(ngx_now() * 1000),
                  token_seq)
end


local function is_sid(value)
    local len = type(value) == "string" and #value or 0
    return len >= SID_MIN_LEN and len <= SID_MAX_LEN
           and not find(value, "[^A-Za-z0-9_-]")
end


local function decision_key(sid, group_id)
    return "d:" .. sid .. ":" .. group_id
end
_M._decision_key = decision_key     -- for spec/ only


-- value == epoch .. " " .. token .. " " .. sig, without building the string
-- (this runs on every cache hit); its time depends only on the lengths.
local function decision_matches(value, epoch, token, sig)
    local e, t = #epoch, #token
    if #value ~= e + t + #sig + 2 then
        return false
    end
    local diff = bor(bxor(byte(value, e + 1), SPACE),
                     bxor(byte(value, e + t + 2), SPACE))
    for i = 1, e do
        diff = bor(diff, bxor(byte(value, i), byte(epoch, i)))
    end
    for i = 1, t do
        diff = bor(diff, bxor(byte(value, e + 1 + i), byte(token, i)))
    end
    local offset = e + t + 2
    for i = 1, #sig do
        diff = bor(diff, bxor(byte(value, offset + i), byte(sig, i)))
    end
    return diff == 0
end


-- The epoch a decision must carry to count now: the configuration's id and
-- the subscriber's current epoch; nil while there is no subscriber (bypass).
local function current_epoch(dc)
    local epoch = dc.dict:get(EPOCH_KEY)
    return epoch and dc.config_id .. "/" .. epoch
end


-- true when a valid decision is cached for (sid, sig, group_id). Reads only:
-- it runs before the cookie's HMAC is checked, so a forged cookie writes
-- nothing to the dict. A decision holds the exact signature it was made for,
-- which was verified then, under this configuration's secrets.
local function decision_hit(dc, sid, sig, group_id)
    local dict = dc.dict
    local epoch = current_epoch(dc)
    local token = epoch and dict:get("s:" .. sid)
    local value = token and dict:get(decision_key(sid, group_id))
    return value and decision_matches(value, epoch, token, sig) or false
end


-- Like decision_hit, for a verified cookie; on a miss, also the tag to store
-- a decision under if the one about to be asked of Redis is positive (nil:
-- the cache is not to be trusted now, store nothing). Must run before the
-- Redis query is sent: that is what makes a revocation processed while the
-- query is in flight invalidate its answer.
local function cached_decision(dc, sid, sig, group_id)
    local dict = dc.dict
    local epoch = current_epoch(dc)
    if not epoch then
        return nil      -- no subscriber, or it lost Redis: bypass
    end

    local token_key = "s:" .. sid
    local token = dict:get(token_key)
    if not token then
        -- Nothing can be cached under a token that does not exist yet.
        token = fresh_token()
        if not dict:add(token_key, token, dc.ttl) then
            token = dict:get(token_key)     -- another request made one
            if not token then
                return nil
            end
        end
    end

    local value = dict:get(decision_key(sid, group_id))
    if value and decision_matches(value, epoch, token, sig) then
        return true
    end
    return nil, epoch .. " " .. token
end


-- Keeps a positive decision until `ttl` after its query was sent (`started`),
-- so that no decision lives longer than ttl, even counting the round trip.
local function store_decision(dc, sid, sig, group_id, tag, started)
    local ttl = dc.ttl - (ngx_now() - started)
    if ttl < DECISION_TTL_MIN then
        return      -- (and 0 would mean "never expires" to the dict)
    end
    local ok, err = dc.dict:set(decision_key(sid, group_id),
                                tag .. " " .. sig, ttl)
    if not ok then
        ngx_log(INFO, "shared_session: decision not cached: ", err)
    end
end


-- A revocation notice for sid: every decision cached for it stops counting.
local function forget_session(dc, sid)
    local dict = dc.dict
    local token_key = "s:" .. sid
    local ok, err = dict:replace(token_key, fresh_token(), dc.ttl)
    -- "not found": nothing is cached for it, and a request that creates a
    -- token from now on sends its query after the change was committed.
    if not ok and err ~= "not found" then
        dict:delete(token_key)
    end
end

_M._decisions = {   -- for spec/ only
    cached = cached_decision,
    hit = decision_hit,
    store = store_decision,
    forget = forget_session,
    EPOCH_KEY = EPOCH_KEY,
    fresh_token = fresh_token,
}


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

    -- A cached decision is bound to the exact signature that was verified
    -- when it was made (by HMAC, or against Redis in stored mode): a hit
    -- needs neither Redis nor the HMAC, which is half of what a hit would
    -- otherwise cost.
    local dc = conf.decision_cache
    if dc and decision_hit(dc, sid, sig, group_id) then
        return 200
    end

    local keys = conf.keys
    if keys and not verify_locally(keys, sid, sig) then
        return refuse(403, WARN, "bad signature", sid, group_id)
    end

    local tag, started
    if dc then
        local hit
        hit, tag = cached_decision(dc, sid, sig, group_id)
        if hit then
            return 200
        end
        started = ngx_now()
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
        if tag then
            store_decision(dc, sid, sig, group_id, tag, started)
        end
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


-- The revocation subscriber (PROTOCOL.md section 7) ---------------------------
--
-- One timer in worker 0 holds a dedicated connection SUBSCRIBEd to
-- <prefix>:invalidate. Each notice replaces the session's token (its cached
-- decisions stop counting at once). The epoch key is set to a new token at
-- every successful SUBSCRIBE (notices may have been missed before it) and
-- refreshed, with a HEARTBEAT_TTL expiry, whenever Redis answers; it is
-- deleted as soon as the connection fails. Without it the cache is bypassed.
--
-- The connection is a bare cosocket speaking RESP, not a resty.redis object:
-- a light thread PINGs every PING_INTERVAL while the timer's thread reads, so
-- that a read never waits for long on a healthy connection (a cosocket read
-- timeout is an error line in nginx's log) and a silent hang is noticed after
-- SUBSCRIBER_READ_TIMEOUT. resty.redis cannot send without reading.

local function resp_command(...)
    local args = { ... }
    local out = { "*", #args, "\r\n" }
    for i = 1, #args do
        local arg = tostring(args[i])
        out[#out + 1] = "$"
        out[#out + 1] = #arg
        out[#out + 1] = "\r\n"
        out[#out + 1] = arg
        out[#out + 1] = "\r\n"
    end
    return concat(out)
end

local PING = resp_command("PING")


-- One reply: a string, a number, a table (array), ngx.null, false and the
-- message (an error reply), or nil and the socket's error.
local function read_resp(sock)
    local line, err = sock:receive()
    if not line then
        return nil, err
    end
    local kind, rest = sub(line, 1, 1), sub(line, 2)
    if kind == "+" then
        return rest
    elseif kind == "-" then
        return false, rest
    elseif kind == ":" then
        return tonumber(rest)
    end

    local n = tonumber(rest)
    if not n then
        return nil, "bad reply from redis"
    end
    if n < 0 then
        return ngx_null
    end
    if kind == "$" then
        local data
        data, err = sock:receive(n + 2)
        if not data then
            return nil, err
        end
        return sub(data, 1, n)
    elseif kind == "*" then
        local items = {}
        for i = 1, n do
            local item
            item, err = read_resp(sock)
            if item == nil then
                return nil, err
            end
            items[i] = item
        end
        return items
    end
    return nil, "bad reply from redis"
end


-- Sends one command and reads its reply (only before the subscription).
local function call(sock, ...)
    local ok, err = sock:send(resp_command(...))
    if not ok then
        return nil, err
    end
    local res
    res, err = read_resp(sock)
    if res == false then
        return nil, err     -- an error reply: its message
    end
    return res, err
end


-- Logs only the changes between up and down, not every retry.
local function subscriber_state(state, dc, up, why)
    if state.up == up then
        return
    end
    state.up = up
    if up then
        ngx_log(NOTICE, "shared_session: revocation subscriber up on ",
                dc.channel, "; decision cache in use")
    else
        ngx_log(ERR, "shared_session: revocation subscriber down (", why,
                "); decision cache bypassed until it is back")
    end
end


-- Applies one reply; true when the epoch must be renewed.
local function apply_reply(dc, res)
    if type(res) ~= "table" or res[1] ~= "message" then
        return false    -- a PONG
    end
    local sid = res[3]
    if is_sid(sid) then
        forget_session(dc, sid)
        return false
    end
    -- Not a session id: which decisions it meant is unknown, so all go.
    ngx_log(WARN, "shared_session: notice on ", dc.channel, " is not a",
            " session id; every cached decision dropped")
    return true
end


-- The light thread that keeps replies coming. When the worker exits it
-- UNSUBSCRIBEs, whose reply wakes the reader up to notice.
local function ping(sock)
    while true do
        ngx_sleep(PING_INTERVAL)
        if worker_exiting() then
            sock:send(resp_command("UNSUBSCRIBE"))
            return
        end
        if not sock:send(PING) then
            return      -- the reader sees the failure too
        end
    end
end


-- One subscription, from connecting to its end. Returns the reason it ended,
-- or nil when the worker is exiting.
local function subscription(dc, r, state)
    -- With Sentinel, always the primary as the sentinels name it now.
    forget_master()
    local host, port = redis_address(r)
    if not host then
        return port
    end
    local sock = socket_tcp()
    sock:settimeouts(r.connect_timeout, r.read_timeout, r.read_timeout)
    local ok, err = sock:connect(host, port, dc.subscriber_connect_options)
    if not ok then
        return "connect: " .. tostring(err)
    end

    local res
    if r.password then
        res, err = call(sock, "AUTH", r.password)
        if res ~= "OK" then
            sock:close()
            return "auth: " .. tostring(err)
        end
    end
    -- (No SELECT: channels are the same in every database.)
    res, err = call(sock, "SUBSCRIBE", dc.channel)
    if type(res) ~= "table" or res[1] ~= "subscribe" then
        sock:close()
        return "subscribe: " .. tostring(err or "unexpected reply")
    end

    local dict = dc.dict
    local epoch = fresh_token()
    dict:set(EPOCH_KEY, epoch, HEARTBEAT_TTL)
    subscriber_state(state, dc, true)
    state.backoff = BACKOFF_MIN

    sock:settimeouts(r.connect_timeout, r.read_timeout,
                     SUBSCRIBER_READ_TIMEOUT)
    local pinger = thread_spawn(ping, sock)
    while not worker_exiting() do
        res, err = read_resp(sock)
        if not res then
            err = res == false and "redis error: " .. tostring(err) or err
            break
        end
        local renew
        ok, renew = pcall(apply_reply, dc, res)
        if not ok or renew then
            -- A notice that could not be applied: drop every decision.
            epoch = fresh_token()
        end
        dict:set(EPOCH_KEY, epoch, HEARTBEAT_TTL)
    end

    dict:delete(EPOCH_KEY)
    thread_kill(pinger)
    sock:close()
    if worker_exiting() then
        return nil
    end
    return tostring(err or "closed")
end


local function sleep_unless_exiting(seconds)
    while seconds > 0 and not worker_exiting() do
        ngx_sleep(math_min(seconds, SLEEP_SLICE))
        seconds = seconds - SLEEP_SLICE
    end
end


local function run_subscriber(premature, dc, r)
    if premature then
        return
    end
    local state = { up = nil, backoff = BACKOFF_MIN }  -- up: nil = not yet
    while not worker_exiting() do
        local ok, why = pcall(subscription, dc, r, state)
        if not ok then
            -- A bug, not Redis: keep the cache bypassed and go on.
            dc.dict:delete(EPOCH_KEY)
            why = "error: " .. tostring(why)
        end
        if why == nil then
            break
        end
        subscriber_state(state, dc, false, why)
        sleep_unless_exiting(state.backoff)
        state.backoff = math_min(state.backoff * 2, BACKOFF_MAX)
    end
end


-- From init_worker_by_lua: starts the subscriber in worker 0 (again in a
-- worker restarted as 0). true where it started, false in the other workers,
-- nil and an error without configure{ decision_cache = ... }.
function _M.start_subscriber()
    local conf = config
    local dc = conf and conf.decision_cache
    if not dc then
        ngx_log(WARN, "shared_session: start_subscriber() without"
                      .. " configure{ decision_cache = ... }: nothing to do")
        return nil, "no decision_cache configured"
    end
    if worker_id() ~= 0 then
        return false
    end
    local ok, err = timer_at(0, run_subscriber, dc, conf.redis)
    if not ok then
        ngx_log(ERR, "shared_session: revocation subscriber not started: ",
                err)
        return nil, "timer: " .. tostring(err)
    end
    return true
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
