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
-- Where the FFI function is not there (plain Lua, the specs' stub of ngx),
-- a reader reads ngx.var.

local ngx = ngx
local ngx_var = ngx.var

local error = error
local pcall = pcall


local _M = { _VERSION = "0.1.0" }


local NGX_OK = 0
local NGX_ERROR = -1

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
_M.reader = per_name(with_ffi and ffi_reader or lua_reader)


-- A function that sets the variable to a string value in the current
-- request: true, or false and nginx's error (e.g. the variable is not
-- declared in the location, or cannot be changed).
_M.setter = per_name(with_ffi and ffi_setter or lua_setter)


return _M
