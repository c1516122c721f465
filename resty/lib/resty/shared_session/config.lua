-- resty.shared_session.config: the options of configure(), checked one by
-- one (the README documents each with its default), and the configuration
-- built from them: HMAC keys derived once, Redis pool names, the decision
-- cache's dict and ids.

local cookie = require "resty.shared_session.cookie"
local decisions = require "resty.shared_session.decisions"
local log = require "resty.shared_session.log"
local metrics = require "resty.shared_session.metrics"
local audit = require "resty.shared_session.audit"

-- The two axes, each an object chosen once here (build): which keys hold
-- a session, and how a connection to Redis is had.
local LAYOUTS = {
    v1 = require "resty.shared_session.layout.v1",         -- PROTOCOL.md 3
    cluster = require "resty.shared_session.layout.cluster", -- section 14
    compact = require "resty.shared_session.layout.compact", -- section 15
}
local single = require "resty.shared_session.topology.single"
local sentinel = require "resty.shared_session.topology.sentinel"
local cluster = require "resty.shared_session.topology.cluster"

local ngx = ngx
local ngx_now = ngx.now
local worker_pid = ngx.worker.pid

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local error = error
local tostring = tostring
local tonumber = tonumber
local find = string.find
local sub = string.sub
local format = string.format
local floor = math.floor

local derive_key = cookie.derive_key
local group_hint = log.group_hint


local DEFAULT_SALT = "flask-resty-session"
local DEFAULT_COOKIE_NAME = "session"
local DEFAULT_KEY_PREFIX = "resty_shared_session"

local _M = {
    _VERSION = "0.1.0",
    -- Also the 0.1.x API's defaults when configure() was not called.
    DEFAULT_COOKIE_NAME = DEFAULT_COOKIE_NAME,
    DEFAULT_KEY_PREFIX = DEFAULT_KEY_PREFIX,
}


local REDIS_DEFAULTS = {
    host = "127.0.0.1",
    port = 6379,
    db = 0,
    socket = false,             -- a Unix socket path instead of host/port
    password = false,           -- false: no AUTH
    username = false,           -- an ACL user (AUTH username password)
    ssl = false,                -- TLS to Redis
    ssl_verify = true,          -- with ssl: check the certificate against
                                -- lua_ssl_trusted_certificate
    server_name = false,        -- with ssl: SNI and the name verified
                                -- (default: host, unless it is an address)
    cluster = false,            -- { nodes = { { host =, port = }, ... } }
    sentinels = false,          -- { { host =, port = }, ... }: ask them for
    master_name = "mymaster",   -- the primary of master_name instead
    connect_timeout = 200,      -- ms
    read_timeout = 500,         -- ms, also used for sending
    pool_size = 64,             -- idle connections kept per worker
    keepalive_timeout = 60000,  -- ms an idle pooled connection is kept
}

local TOP_LEVEL_OPTIONS = {
    secret = true, secret_fallbacks = true, salt = true,
    cookie_name = true, key_prefix = true, key_layout = true, redis = true,
    decision_cache = true, refresh = true, metrics = true, audit = true,
    checks = true,
}

-- What a named check (checks.<name>) may say: access{}'s table form.
local CHECK_OPTIONS = {
    group = true, group_var = true, generation_var = true, reason_var = true,
}

local REFRESH_DEFAULTS = {
    -- s a session may go without being extended before a refresh is due;
    -- unset (false), it follows the session's idle timeout (refresh.lua)
    interval = false,
    dict = false,           -- a lua_shared_dict; default: decision_cache's
    user_id_field = "username", -- the session field naming its user, as
                                -- the app's userIdField (section 13.1)
}
local REFRESH_INTERVAL_MAX = 86400

local DECISION_CACHE_DEFAULTS = {
    dict = false,               -- required: a lua_shared_dict name
    all_writers_publish = false, -- true: every writer publishes notices
    ttl = false,                -- s a decision is kept, at most: 1, or 300
                                -- when all writers publish
    worker_entries = 20000,     -- cookies remembered per worker; 0: none
}
local DECISION_TTL_MIN = decisions.TTL_MIN
local DECISION_TTL_MAX = decisions.TTL_MAX
local DECISION_TTL_MAX_PUBLISHED = decisions.TTL_MAX_PUBLISHED
local DECISION_TTL_DEFAULT = 1
local DECISION_TTL_DEFAULT_PUBLISHED = 300


-- The checks raise; new() turns the first error into nil, err.
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


-- A number (or a string of one) of at least `min`, and at most `max` when
-- given (`max_text`: how the message says it, `max` by default).
local function check_number(name, value, min, integer, max, max_text)
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
    if max and n > max then
        option_error(name, "must be at most " .. (max_text or max))
    end
    return n
end


-- An option that holds options of its own (redis, decision_cache, refresh,
-- metrics, audit): raises unless `opts` is a table (`what`: what it must be
-- instead, "must be a table" by default) whose every key is one of
-- `defaults`'; returns a copy with the defaults of the keys it lacks.
local function check_options(name, opts, defaults, what)
    if type(opts) ~= "table" then
        option_error(name, what or "must be a table")
    end
    for k in pairs(opts) do
        if defaults[k] == nil then
            option_error(name .. "." .. tostring(k), "is unknown")
        end
    end
    local copy = {}
    for k, default in pairs(defaults) do
        local v = opts[k]
        if v == nil then
            v = default
        end
        copy[k] = v
    end
    return copy
end


local function check_redis_options(opts)
    if opts == nil then
        opts = {}
    end
    local r = check_options("redis", opts, REDIS_DEFAULTS)

    check_non_empty_string("redis.host", r.host)
    r.port = check_number("redis.port", r.port, 1, true, 65535)
    r.db = check_number("redis.db", r.db, 0, true)
    if r.password ~= false then
        check_non_empty_string("redis.password", r.password)
    end
    if r.username ~= false then
        check_non_empty_string("redis.username", r.username)
        if r.password == false then
            option_error("redis.username", "needs redis.password")
        end
    end
    if r.socket ~= false then
        check_non_empty_string("redis.socket", r.socket)
        if sub(r.socket, 1, 1) ~= "/" then
            option_error("redis.socket", "must be an absolute path")
        end
    end
    for _, name in ipairs { "ssl", "ssl_verify" } do
        if type(r[name]) ~= "boolean" then
            option_error("redis." .. name, "must be true or false")
        end
    end
    if r.server_name ~= false then
        check_non_empty_string("redis.server_name", r.server_name)
    elseif r.ssl and not find(r.host, "^[%d.]+$") and not find(r.host, ":") then
        r.server_name = r.host
    end
    r.connect_timeout = check_number("redis.connect_timeout",
                                     r.connect_timeout, 1)
    r.read_timeout = check_number("redis.read_timeout", r.read_timeout, 1)
    r.pool_size = check_number("redis.pool_size", r.pool_size, 1, true)
    r.keepalive_timeout = check_number("redis.keepalive_timeout",
                                       r.keepalive_timeout, 1)

    return r
end


-- How option checks raise, for the layouts and topologies that check their
-- own options.
local CHECK = {
    error = option_error,
    string = check_non_empty_string,
    number = check_number,
    options = check_options,
}
_M.CHECK = CHECK


-- layout-boundary: the one choice (spec/layout_boundary_spec.lua lets
-- only these two functions read which layout and topology are asked for).

-- The topology these options describe: the one choice of it.
local function new_topology(r)
    local topology = single
    if r.cluster ~= false then
        topology = cluster
    elseif r.sentinels ~= false then
        topology = sentinel
    end
    return topology.new(r, CHECK)
end


-- The keyspace (layout instance) of `prefix` on the topology `r`, for the
-- option key_layout of `opts`: the one choice of the layout.
local function new_keyspace(opts, prefix, r)
    local key_layout = opts.key_layout
    if key_layout == nil then
        key_layout = "v1"
    end
    local layout = LAYOUTS[key_layout]
    if type(key_layout) ~= "string" or not layout then
        option_error("key_layout", 'must be "v1", "cluster" or "compact"')
    end
    return layout.new(prefix, r, CHECK)
end

-- layout-boundary: end of the one choice.


-- The 0.1.x API's keyspace when configure() was not called: the v1 layout
-- under the default prefix on one Redis (only its key names serve there).
function _M.default_keyspace()
    return new_keyspace({}, DEFAULT_KEY_PREFIX,
                        new_topology(check_redis_options(nil)))
end


local config_seq = 0   -- counts configurations built, for config_id

-- The decision cache: nil when the option is absent. The dict must exist
-- already (configure runs in init_by_lua, after lua_shared_dict is parsed).
local function check_decision_cache_options(opts, keyspace, r)
    if opts == nil then
        return nil
    end
    check_options("decision_cache", opts, DECISION_CACHE_DEFAULTS)

    local name = opts.dict
    check_non_empty_string("decision_cache.dict", name)
    local shared = ngx.shared
    local dict = shared and shared[name]
    if not dict then
        option_error("decision_cache.dict", "must name a lua_shared_dict"
                     .. " (none is called \"" .. group_hint(name) .. "\")")
    end

    -- Whether a writer may change a session without publishing a notice
    -- (the 2017 Flask extension does): then only ttl bounds a stale
    -- decision, so it stays short.
    local all_publish = opts.all_writers_publish
    if all_publish == nil then
        all_publish = DECISION_CACHE_DEFAULTS.all_writers_publish
    elseif type(all_publish) ~= "boolean" then
        option_error("decision_cache.all_writers_publish",
                     "must be true or false")
    end

    local ttl = opts.ttl
    if ttl == nil then
        ttl = all_publish and DECISION_TTL_DEFAULT_PUBLISHED
              or DECISION_TTL_DEFAULT
    elseif type(ttl) == "string" then
        ttl = tonumber(ttl)
    end
    local ttl_max = all_publish and DECISION_TTL_MAX_PUBLISHED
                    or DECISION_TTL_MAX
    if type(ttl) ~= "number" or ttl ~= ttl or ttl < DECISION_TTL_MIN
       or ttl > ttl_max
    then
        option_error("decision_cache.ttl", "must be a number of seconds from "
                     .. DECISION_TTL_MIN .. " to " .. ttl_max
                     .. (all_publish and ""
                         or " (up to " .. DECISION_TTL_MAX_PUBLISHED
                            .. " with all_writers_publish = true)"))
    end

    local entries = opts.worker_entries
    if entries == nil then
        entries = DECISION_CACHE_DEFAULTS.worker_entries
    end
    entries = check_number("decision_cache.worker_entries", entries, 0, true)

    config_seq = config_seq + 1
    return {
        dict = dict,
        dict_name = name,
        ttl = ttl,
        all_writers_publish = all_publish,
        -- Decisions live a random share of ttl from this to 1 (decisions.lua
        -- store()); nil: ttl exactly. Only when every writer publishes: then
        -- ttl is a backstop, not the staleness bound of a writer that does
        -- not publish, and long enough for decisions made together to end
        -- together in a herd.
        spread = all_publish and decisions.SPREAD or nil,
        -- This worker's level (each worker has its own copy after the fork).
        worker = decisions.new_worker_cache(entries),
        -- Decisions are made under one configuration (its secrets): a new
        -- configure(), such as a reload that drops a secret, starts afresh
        -- even though the dict outlives the reload.
        config_id = format("%x.%x.%x", worker_pid(), floor(ngx_now() * 1000),
                           config_seq),
        channel = keyspace:channel(),
        -- PROTOCOL.md section 13.4: where `!ack <id>` notices are answered.
        ack_channel = keyspace:ack_channel(),
        -- Its own pool name, never handed back: the subscriber's connection
        -- is never a pooled one, and never taken from a pool either.
        subscriber_connect_options = {
            pool = format("shared_session:subscriber:%s:%s", r.host,
                          tostring(r.port)),
        },
    }
end


-- The refresh of sessions that nginx sees used (PROTOCOL.md section 12):
-- nil when turned off (`refresh = false`): nginx then writes nothing.
local function check_refresh_options(opts, decision_cache)
    if opts == false then
        return nil
    end
    if opts == nil then
        opts = {}
    end
    check_options("refresh", opts, REFRESH_DEFAULTS,
                  "must be a table, or false to turn it off")

    local interval = opts.interval
    if type(interval) == "string" then
        interval = tonumber(interval)
    end
    if opts.interval ~= nil and (type(interval) ~= "number"
       or interval ~= interval
       or interval < DECISION_TTL_MIN or interval > REFRESH_INTERVAL_MAX)
    then
        option_error("refresh.interval", "must be a number of seconds from "
                     .. DECISION_TTL_MIN .. " to " .. REFRESH_INTERVAL_MAX)
    end

    local dict
    if opts.dict ~= nil then
        check_non_empty_string("refresh.dict", opts.dict)
        local shared = ngx.shared
        dict = shared and shared[opts.dict]
        if not dict then
            option_error("refresh.dict", "must name a lua_shared_dict"
                         .. " (none is called \"" .. group_hint(opts.dict)
                         .. "\")")
        end
    elseif decision_cache then
        dict = decision_cache.dict
    end

    local field = opts.user_id_field
    if field == nil then
        field = REFRESH_DEFAULTS.user_id_field
    end
    check_non_empty_string("refresh.user_id_field", field)

    -- Without a dict, each worker refreshes on its own (once per interval
    -- per worker). interval nil: it follows each session's idle timeout.
    return { interval = interval, dict = dict or nil, user_id_field = field }
end


-- checks = { <name> = { group = <id> | group_var = <name>,
-- generation_var = <name>, reason_var = <name> } }: the table form of
-- access(), checked once here, for shared_session.check(<name>). nil when
-- none.
local function check_checks(checks)
    if checks == nil then
        return nil
    end
    if type(checks) ~= "table" then
        option_error("checks", "must be a table of named checks")
    end
    local out = {}
    for name, c in pairs(checks) do
        local where = "checks." .. tostring(name)
        if type(name) ~= "string" or name == "" then
            option_error(where, "must be named by a non-empty string")
        end
        if type(c) ~= "table" then
            option_error(where, "must be a table (group or group_var, and"
                         .. " generation_var, reason_var)")
        end
        for k in pairs(c) do
            if not CHECK_OPTIONS[k] then
                option_error(where .. "." .. tostring(k), "is unknown")
            end
        end
        local group = c.group
        if (group == nil) == (c.group_var == nil) then
            option_error(where, "must have one of group and group_var")
        end
        if group ~= nil and not ((type(group) == "string" and group ~= "")
                                 or type(group) == "number")
        then
            option_error(where .. ".group", "must be a non-empty string or a"
                         .. " number")
        end
        for _, k in ipairs({ "group_var", "generation_var", "reason_var" }) do
            if c[k] ~= nil then
                check_non_empty_string(where .. "." .. k, c[k])
            end
        end
        out[name] = { group = group, group_var = c.group_var,
                      generation_var = c.generation_var,
                      reason_var = c.reason_var }
    end
    return out
end


local function build(opts)
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

    -- An RFC 6265 token: no "=", ";", ",", quote or whitespace, which the
    -- Cookie header's grammar (PROTOCOL.md section 10) relies on.
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

    local r = new_topology(check_redis_options(opts.redis))
    local keyspace = new_keyspace(opts, key_prefix, r)
    local decision_cache = check_decision_cache_options(opts.decision_cache,
                                                        keyspace, r)
    if decision_cache then
        -- Whether a notice of section 13.4 only ever raises a kept value.
        decision_cache.controls_only_rise = keyspace.CONTROLS_ONLY_RISE
    end
    local refresh_conf = check_refresh_options(opts.refresh, decision_cache)

    -- PROTOCOL.md 16.1: the key of the sessions' event ids (the only
    -- thing a log line says of a session), from the current secret; none
    -- in stored mode (no secret).
    local event_key = keys and log.event_id_key(keys[1]) or nil

    if keys then
        for i = 1, #keys do
            keys[i] = derive_key(keys[i], salt)
        end
    end

    -- Off (nil) unless asked for: then a request pays one branch for each.
    local dicts = {}
    if decision_cache then
        dicts[decision_cache.dict_name] = decision_cache.dict
    end
    if refresh_conf and refresh_conf.dict and opts.refresh
       and opts.refresh.dict
    then
        dicts[opts.refresh.dict] = refresh_conf.dict
    end
    local metrics_conf = metrics.new(opts.metrics, CHECK, dicts)
    r.metrics = metrics_conf
    if refresh_conf then
        refresh_conf.metrics = metrics_conf
    end
    local audit_conf = audit.new(opts.audit, CHECK, event_key)

    return {
        keys = keys,            -- derived keys, current first; nil: stored mode
        cookie_name = cookie_name,
        key_prefix = key_prefix,
        keyspace = keyspace,    -- the key layout of key_prefix, on redis
        redis = r,              -- the topology, with the redis options
        decision_cache = decision_cache,    -- nil: every check asks Redis
        refresh = refresh_conf,             -- nil: nginx writes nothing
        event_key = event_key,  -- nil: stored mode, no event ids
        metrics = metrics_conf,             -- nil: nothing counted
        audit = audit_conf,                 -- nil: no audit lines
        checks = check_checks(opts.checks), -- nil: none named
    }
end


-- A configuration built from the options of configure(), or nil and an
-- error that names the first bad option (and never holds a secret).
function _M.new(opts)
    local ok, conf = pcall(build, opts)
    if not ok then
        return nil, conf
    end
    return conf
end


return _M
