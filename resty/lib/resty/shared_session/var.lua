-- resty.shared_session.var: reads and writes of nginx variables that
-- LuaJIT compiles.
--
-- lua-resty-core's ngx.var.<name> ends in `return ffi_str(...)`, a tail call
-- inside the __index metamethod: LuaJIT cannot record it ("NYI: return to
-- lower frame"), blacklists the getter after a few tries, and from then on
-- every trace that reaches it aborts, so the check around it runs in the
-- interpreter. A reader made here calls the same C function,
-- ngx_http_lua_ffi_var_get, with the name and its lower-case buffer made
-- once per distinct name, and keeps the string in a local before returning.
-- ngx.var is left as it is for every other piece of code.
--
-- Where nginx exports it (it does, for its dynamic modules), a reader on a
-- request calls nginx's own ngx_http_get_variable, which that function
-- calls after lower-casing and hashing the name on every read: here the
-- lower-cased name and its hash (ngx_hash_key) are made once per name.
--
-- Where the FFI function is not there (plain Lua, the specs' stub of ngx),
-- a reader reads ngx.var.

local ngx = ngx
local ngx_var = ngx.var

local error = error
local pcall = pcall
local band = require("bit").band


local _M = { _VERSION = "0.1.0" }


local NGX_OK = 0
local NGX_ERROR = -1

-- The C functions, the request getter and the shared out-parameters; nil
-- when not running in nginx's http subsystem with lua-resty-core.
local var_get, var_set, get_request, get_size_ptr, value_ptr, errmsg
local ffi_new, ffi_str, ffi_copy
-- nginx's own ngx_http_get_variable and ngx_hash_key, the ngx_str_t type,
-- and lua-nginx-module's ngx_http_lua_ffi_get_phase (nil: not exported).
local get_variable, hash_key, str_type, get_phase

-- The size of the buffer nginx writes a setter's error into (as in
-- lua-resty-core).
local ERR_BUF_SIZE = 256

local function load_ffi()
    local config = ngx.config
    if not (config and config.subsystem == "http") then
        return false
    end
    local ffi = require "ffi"
    local base = require "resty.core.base"
    require "resty.core.var"    -- declares ngx_http_lua_ffi_var_get and _set
    var_get = ffi.C.ngx_http_lua_ffi_var_get
    var_set = ffi.C.ngx_http_lua_ffi_var_set
    get_request = base.get_request
    get_size_ptr = base.get_size_ptr
    errmsg = base.get_errmsg_ptr()
    value_ptr = ffi.new("unsigned char *[1]")
    ffi_new = ffi.new
    ffi_str = ffi.string
    ffi_copy = ffi.copy
    require "resty.core.phase"  -- declares ngx_http_lua_ffi_get_phase
    -- (A declaration another library made already is as good as ours;
    -- resty.core.base declares ngx_str_t.)
    pcall(ffi.cdef, [[
        typedef struct {
            unsigned        len:28;
            unsigned        valid:1;
            unsigned        no_cacheable:1;
            unsigned        not_found:1;
            unsigned        escape:1;
            unsigned char  *data;
        } ngx_variable_value_t;
    ]])
    pcall(ffi.cdef, [[
        ngx_variable_value_t *ngx_http_get_variable(ngx_http_request_t *r,
            ngx_str_t *name, uintptr_t key);
    ]])
    pcall(ffi.cdef, "uintptr_t ngx_hash_key(const unsigned char *, size_t);")
    local C = ffi.C
    if pcall(function()
        return C.ngx_http_get_variable and C.ngx_hash_key
               and C.ngx_http_lua_ffi_get_phase
    end) then
        get_variable = C.ngx_http_get_variable
        hash_key = C.ngx_hash_key
        get_phase = C.ngx_http_lua_ffi_get_phase
        str_type = ffi.typeof("ngx_str_t[1]")
    end
    return true
end

local with_ffi = pcall(load_ffi) and var_get ~= nil
_M.compiled = with_ffi


-- The variable's value where nginx keeps it (an `unsigned char *`, valid
-- for the request) and its length (a size_t cdata); nil when the variable
-- is not found or has no value. `lowcase` is the name's buffer, made once.
local function ffi_get(name, len, lowcase)
    local r = get_request()
    if not r then
        error("no request found", 3)
    end
    local value_len = get_size_ptr()
    local rc = var_get(r, name, len, lowcase, 0, value_ptr, value_len, errmsg)
    if rc == NGX_OK then
        return value_ptr[0], value_len[0]
    end
    if rc == NGX_ERROR then
        error(ffi_str(errmsg[0]), 3)
    end
    return nil      -- NGX_DECLINED: not found, or no value
end


-- Buffers that live as long as the worker (a name's, pointed to by its
-- ngx_str_t).
local anchors = {}

-- lua-nginx-module's contexts that run on a real request, whose variables
-- nginx made: set, rewrite, access, content, log, header_filter,
-- body_filter, balancer, server_rewrite. The others (a timer, init_worker,
-- the ssl_* phases) run on its fake request, which has none: there the
-- read goes through ngx_http_lua_ffi_var_get, which refuses them.
local REQUEST_CONTEXTS = 0x827F


-- A reader of `name` through ngx_http_get_variable, with the name
-- lower-cased and hashed once (ngx_http_lua_ffi_var_get does both on every
-- read; nginx keeps variable names in lower case).
local function direct_reader(name, len, lowcase)
    local buf = ffi_new("unsigned char[?]", len)
    ffi_copy(buf, name:lower(), len)
    local str = str_type()
    str[0].len = len
    str[0].data = buf
    anchors[#anchors + 1] = buf
    local key = hash_key(buf, len)
    return function()
        local r = get_request()
        local p, n
        if r and band(get_phase(r, errmsg), REQUEST_CONTEXTS) ~= 0 then
            local vv = get_variable(r, str, key)
            if vv == nil or vv.not_found == 1 then
                return nil
            end
            p, n = vv.data, vv.len
        else
            p, n = ffi_get(name, len, lowcase)
            if not p then
                return nil
            end
        end
        local value = ffi_str(p, n)
        return value
    end
end


local function ffi_reader(name)
    local len = #name
    local lowcase = ffi_new("char[?]", len)
    if get_variable then
        return direct_reader(name, len, lowcase)
    end
    return function()
        local p, n = ffi_get(name, len, lowcase)
        if not p then
            return nil
        end
        -- A local, not `return ffi_str(...)`: the tail call is what LuaJIT
        -- cannot compile.
        local value = ffi_str(p, n)
        return value
    end
end


local function lua_reader(name)
    return function()
        return ngx_var[name]
    end
end


-- A setter through ngx_http_lua_ffi_var_set. lua-resty-core's
-- `ngx.var[name] = value` is a __newindex metamethod that raises its
-- errors, so a caller needs pcall around it, and a trace that starts in the
-- function pcall calls cannot return through pcall ("NYI: return to lower
-- frame"): it aborts on every request. This one returns its error instead.
local function ffi_setter(name)
    local len = #name
    -- The name's lower-case buffer, then the error's.
    local buf = ffi_new("unsigned char[?]", len + ERR_BUF_SIZE)
    local errbuf = buf + len
    return function(value)
        local r = get_request()
        if not r then
            return false, "no request found"
        end
        local errlen = get_size_ptr()
        errlen[0] = ERR_BUF_SIZE
        local rc = var_set(r, name, len, buf, value, #value, errbuf, errlen)
        if rc == NGX_OK then
            return true
        end
        local err = ffi_str(errbuf, errlen[0])
        return false, err
    end
end


local function assign(name, value)
    ngx_var[name] = value
end

local function lua_setter(name)
    return function(value)
        local ok, err = pcall(assign, name, value)
        return ok, err
    end
end


-- Readers already made, by variable name: one per distinct name for the
-- life of the worker (the names come from nginx.conf, a bounded set).
local readers = {}


-- A function that returns the variable's value in the current request
-- (a string, or nil when the variable is not found or has no value).
function _M.reader(name)
    local read = readers[name]
    if not read then
        read = with_ffi and ffi_reader(name) or lua_reader(name)
        readers[name] = read
    end
    return read
end


-- Setters already made, by variable name.
local setters = {}


-- A function that sets the variable to a string value in the current
-- request: true, or false and nginx's error (e.g. the variable is not
-- declared in the location, or cannot be changed).
function _M.setter(name)
    local set = setters[name]
    if not set then
        set = with_ffi and ffi_setter(name) or lua_setter(name)
        setters[name] = set
    end
    return set
end


return _M
