-- resty.shared_session.log: what a log line may say about a session or a
-- group. Never a whole session id, a signature, a cookie or a secret.

local ffi = require "ffi"

local type = type
local tostring = tostring
local pcall = pcall
local sub = string.sub
local gsub = string.gsub
local byte = string.byte
local rep = string.rep
local format = string.format
local ffi_new = ffi.new
local ffi_string = ffi.string

-- One declaration at a time: another module (or a spec's stub) may have
-- declared some of them already, which is no error here.
for _, declaration in ipairs {
    "typedef struct evp_md_st EVP_MD;",
    "const EVP_MD *EVP_sha256(void);",
    [[unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                          const unsigned char *d, size_t n, unsigned char *md,
                          unsigned int *md_len);]],
} do
    pcall(ffi.cdef, declaration)
end


local _M = { _VERSION = "0.1.0" }


-- The key of event ids in force (configure() sets it; nil: stored mode,
-- no secret, or not configured): what session_hint() uses.
local event_key

function _M.use_event_key(key)
    event_key = key
end


-- libcrypto: nginx's own (it links it for TLS), else the system's.
local crypto
local function libcrypto()
    if crypto == nil then
        crypto = false
        if pcall(function() return ffi.C.HMAC and ffi.C.EVP_sha256 end) then
            crypto = ffi.C
        else
            for _, name in ipairs { "crypto", "libcrypto.so.3",
                                    "libcrypto.so.1.1" } do
                local ok, lib = pcall(ffi.load, name)
                if ok then
                    crypto = lib
                    break
                end
            end
        end
    end
    return crypto or nil
end


local function hmac_sha256(key, msg)
    local lib = libcrypto()
    if not lib then
        return nil, "no libcrypto for HMAC-SHA256"
    end
    local out = ffi_new("unsigned char[32]")
    local len = ffi_new("unsigned int[1]")
    if lib.HMAC(lib.EVP_sha256(), key, #key, msg, #msg, out, len) == nil then
        return nil, "HMAC-SHA256 failed"
    end
    return ffi_string(out, len[0])
end


-- One format call, not gsub with a function: LuaJIT cannot compile a
-- return from the function gsub calls ("NYI: return to lower frame"), and a
-- timer that logs often (refresh.lua) made that callback hot enough to be
-- traced, an abort in the rock's files that t/jit.spec.ts saw.
local HEX32 = rep("%02x", 32)

local function hex(bytes)
    local n = #bytes
    return format(n == 32 and HEX32 or rep("%02x", n), byte(bytes, 1, n))
end


local EVENT_ID_LABEL = "shared-session event id"
local event_id


-- PROTOCOL.md section 16.1: the key of the event ids, from the current
-- secret. Computed once per secret by the caller (at init).
function _M.event_id_key(secret)
    return hmac_sha256(secret, EVENT_ID_LABEL)
end


-- PROTOCOL.md section 16.1: the session's event id (32 hex characters), the
-- same as the application's for the same secret, so that the two doors'
-- logs can be joined; without the secret it tells nothing about the id.
-- `key` from event_id_key(). "-" without a session id.
function event_id(key, sid)
    if not sid then
        return "-"
    end
    local mac, err = hmac_sha256(key, sid)
    if not mac then
        return nil, err
    end
    return sub(hex(mac), 1, 32)
end
_M.event_id = event_id


-- Whether nginx's error_log writes lines of `level` (read once per
-- worker): a line is built, and its session's event id (an HMAC) made,
-- only when it would be written.
local log_level
function _M.logged(level)
    if not log_level then
        local ok, errlog = pcall(require, "ngx.errlog")
        log_level = ok and errlog.get_sys_filter_level() or ngx.DEBUG
    end
    return level <= log_level
end


-- What a log line says of a session: its event id under the configured
-- secret (PROTOCOL.md 16.1), never its id nor a part of it; "-" without a
-- session id, or without a secret (stored mode: no event id can be made).
function _M.session_hint(sid)
    if not sid or not event_key then
        return "-"
    end
    return event_id(event_key, sid) or "-"
end


-- A group id (or any name from outside) cut to 64 characters, with unusual
-- characters replaced by "?".
function _M.group_hint(group_id)
    if type(group_id) ~= "string" then
        return tostring(group_id)
    end
    return (gsub(sub(group_id, 1, 64), "[^A-Za-z0-9_.:@/-]", "?"))
end


return _M
