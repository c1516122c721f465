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
-- That function lower-cases and hashes the name on every call (ngx_hash_strlow,
-- about 300 instructions per request for "http_cookie" and "group_id",
-- counted by callgrind). So a reader calls nginx's own lookup,
-- ngx_http_get_variable, with the lower-case name and its hash computed once
-- (nginx exports both functions for its dynamic modules), and checks, on its
-- first read in each worker, that this gives what ngx_http_lua_ffi_var_get
-- gives; if it does not (or nginx does not export them), it reads through
-- ngx_http_lua_ffi_var_get from then on and says so once in the error log.
--
-- Where the FFI function is not there (plain Lua, the specs' stub of ngx),
-- a reader reads ngx.var.

local ngx = ngx
local ngx_var = ngx.var

local error = error
local pcall = pcall


local _M = { _VERSION = "0.1.0" }


local NGX_OK = 0
local NGX_ERROR = -1
local NGX_DECLINED = -5

-- The C functions, the request getter and the shared out-parameters; nil
-- when not running in nginx's http subsystem with lua-resty-core.
local var_get, var_set, get_request, get_size_ptr, value_ptr, errmsg
local ffi_new, ffi_str

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
    return true
end

local with_ffi = pcall(load_ffi) and var_get ~= nil
_M.compiled = with_ffi


-- nginx's variable lookup (ngx_http_variables.h): the value as nginx keeps
-- it, its bit fields laid out by LuaJIT as the C compiler lays them out.
-- nil when nginx does not export the two functions.
local get_variable, hash_key_lc

local function load_lookup()
    local ffi = require "ffi"
    if not pcall(ffi.typeof, "rss_variable_value_t") then
        ffi.cdef[[
            typedef struct {
                unsigned len:28;
                unsigned valid:1;
                unsigned no_cacheable:1;
                unsigned not_found:1;
                unsigned escape:1;
                unsigned char *data;
            } rss_variable_value_t;
            rss_variable_value_t *ngx_http_get_variable(ngx_http_request_t *r,
                ngx_str_t *name, uintptr_t key);
            uintptr_t ngx_hash_key_lc(unsigned char *data, size_t len);
        ]]
    end
    get_variable = ffi.C.ngx_http_get_variable
    hash_key_lc = ffi.C.ngx_hash_key_lc
end

if with_ffi and not pcall(load_lookup) then
    get_variable = nil
end


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


local function ffi_reader(name)
    local len = #name
    local lowcase = ffi_new("char[?]", len)
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


local anchored = {}

-- The current request, once lua-nginx-module has said that its variables
-- can be read (not a timer's stand-in request): it checks that with no
-- name and no capture, reading nothing (NGX_DECLINED), else NGX_ERROR and
-- why, which this raises (as ngx.var does).
local function request()
    local r = get_request()
    if not r then
        error("no request found", 3)
    end
    local rc = var_get(r, nil, 0, nil, 0, nil, nil, errmsg)
    if rc ~= NGX_DECLINED then
        error(ffi_str(errmsg[0]), 3)
    end
    return r
end


-- A reader through ngx_http_get_variable: function(r), r from request();
-- the name's lower-case copy and its hash made once. Its first read in this
-- worker is checked against `checked` (a reader through
-- ngx_http_lua_ffi_var_get); if the two differ, or the lookup raises, that
-- reader is used from then on.
local function lookup_reader(name, checked)
    local len = #name
    local str = ffi_new("ngx_str_t[1]")
    local lowcase = ffi_new("unsigned char[?]", len + 1, name:lower())
    -- str only points at the buffer: kept here, the GC does not free it.
    anchored[#anchored + 1] = lowcase
    str[0].data = lowcase
    str[0].len = len
    local hash = hash_key_lc(lowcase, len)
    local read

    local function direct(r)
        local vv = get_variable(r, str, hash)
        if vv == nil or vv.not_found == 1 then
            return nil
        end
        local value = ffi_str(vv.data, vv.len)
        return value
    end

    local function first(r)
        local ok, value = pcall(direct, r)
        local expected = checked()
        if ok and value == expected then
            read = direct
        else
            ngx.log(ngx.WARN, "shared_session: $", name, " read through",
                    " ngx_http_lua_ffi_var_get (nginx's own lookup gave ",
                    ok and "another value" or tostring(value), ")")
            read = function()
                return checked()
            end
        end
        return expected
    end

    read = first
    return function(r)
        return read(r)
    end
end


-- function(r): the variable's value in r (from request()).
local function request_reader(name)
    local checked = ffi_reader(name)
    if not get_variable then
        return function()
            return checked()
        end
    end
    return lookup_reader(name, checked)
end


local function fast_reader(name)
    local read = request_reader(name)
    return function()
        return read(request())
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


-- A function of a variable's name that makes `make(name)` once per name
-- and keeps it for the life of the worker (the names come from nginx.conf,
-- a bounded set).
local function per_name(make)
    local made = {}
    return function(name)
        local f = made[name]
        if not f then
            f = make(name)
            made[name] = f
        end
        return f
    end
end


-- A function that returns the variable's value in the current request
-- (a string, or nil when the variable is not found or has no value).
_M.reader = per_name(with_ffi and fast_reader or lua_reader)

-- For the hot path, where one request() serves several reads:
-- request() (raises where variables cannot be read, as ngx.var does), and
-- readers of a request, function(r) (in plain Lua: request() gives true,
-- and a reader reads ngx.var).
_M.request = with_ffi and request or function()
    return true
end
_M.request_reader = per_name(with_ffi and request_reader or function(name)
    local read = lua_reader(name)
    return function()
        return read()
    end
end)

-- For resty/t only: a reader through nginx's own lookup, its first read
-- checked against `checked` (a function); nil where that lookup is not
-- there.
function _M.lookup_reader_checked_by(name, checked)
    if get_variable then
        local read = lookup_reader(name, checked)
        return function()
            return read(request())
        end
    end
end


-- A function that sets the variable to a string value in the current
-- request: true, or false and nginx's error (e.g. the variable is not
-- declared in the location, or cannot be changed).
_M.setter = per_name(with_ffi and ffi_setter or lua_setter)


return _M
