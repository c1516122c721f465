-- resty.shared_session.cookie: the session cookie and its signature
-- (PROTOCOL.md sections 1, 2 and 10): the Cookie header's grammar, the
-- strict parser, the constant-time comparison, and the itsdangerous
-- HMAC-SHA1 signature check.

local bit = require "bit"

local ngx = ngx
local hmac_sha1 = ngx.hmac_sha1
local encode_base64 = ngx.encode_base64

local type = type
local concat = table.concat
local byte = string.byte
local char = string.char
local sub = string.sub
local find = string.find
local bxor = bit.bxor
local bor = bit.bor


local _M = { _VERSION = "0.1.0" }


local MAX_COOKIE_LEN = 256
local SID_MIN_LEN = 16
local SID_MAX_LEN = 128
local SIG_LEN = 27


local MAX_HEADER_LEN = 8000
local TOO_LONG = "cookie header longer than " .. MAX_HEADER_LEN .. " bytes"

-- The Cookie header's bytes that the grammar looks at one by one. Compared
-- as numbers, not looked up in a table: this runs on every byte of every
-- request's header.
local HTAB, SP, COMMA, EQUALS, DEL = 9, 32, 44, 61, 127


-- The bytes a cookie value may hold: [A-Za-z0-9_.-].
local COOKIE_BYTES = {}
for c = 0, 255 do
    COOKIE_BYTES[c] = find(char(c), "^[A-Za-z0-9_.-]$") ~= nil
end


-- SP and HTAB: the whitespace around names and values.
local function skip_ows(s, i, last)
    while i <= last do
        local c = byte(s, i)
        if c ~= SP and c ~= HTAB then
            break
        end
        i = i + 1
    end
    return i
end


local function skip_ows_back(s, i, first)
    while i >= first do
        local c = byte(s, i)
        if c ~= SP and c ~= HTAB then
            break
        end
        i = i - 1
    end
    return i
end


-- When s holds, from i to at most last, optional whitespace, `name`,
-- optional whitespace and "=", the index after the "="; else nil. The name
-- is compared byte for byte (case matters).
local function after_name(s, i, last, name, name_len)
    i = skip_ows(s, i, last)
    if i + name_len > last then
        return nil
    end
    for k = 0, name_len - 1 do
        if byte(s, i + k) ~= byte(name, k + 1) then
            return nil
        end
    end
    local j = skip_ows(s, i + name_len, last)
    if j <= last and byte(s, j) == EQUALS then
        return j + 1
    end
    return nil
end


local function same_bytes(s, a, a_last, b, b_last)
    if a_last - a ~= b_last - b then
        return false
    end
    for k = 0, a_last - a do
        if byte(s, a + k) ~= byte(s, b + k) then
            return false
        end
    end
    return true
end


-- The value of the cookie `name` in a Cookie header (PROTOCOL.md section
-- 10): `header` is the header as nginx's $http_cookie gives it (every line
-- joined with "; "), a list of its lines, or nil. Returns the value (a
-- string, maybe empty: section 2 judges it); or nil when there is no cookie
-- of that name; or nil and the reason the header is refused. One pass over
-- the bytes, no table, one string made (the value).
function _M.from_header(header, name)
    if type(header) == "table" then
        header = concat(header, "; ")
    end
    if type(header) ~= "string" then
        return nil
    end

    -- The cap does not count SP and HTAB: the HTTP layers differ on the
    -- whitespace at the ends of a line. Counted only when it could matter.
    local len = #header
    if len > MAX_HEADER_LEN then
        local n = len
        for i = 1, len do
            local c = byte(header, i)
            if c == SP or c == HTAB then
                n = n - 1
            end
        end
        if n > MAX_HEADER_LEN then
            return nil, TOO_LONG
        end
    end

    -- The control bytes HTTP forbids in a field value: 0x00-0x08,
    -- 0x0A-0x1F, 0x7F.
    local commas = false
    for i = 1, len do
        local c = byte(header, i)
        if c < SP then
            if c ~= HTAB then
                return nil, "control character in cookie header"
            end
        elseif c == DEL then
            return nil, "control character in cookie header"
        elseif c == COMMA then
            commas = true
        end
    end

    local name_len = #name
    if commas then
        local at = find(header, ",", 1, true)
        while at do
            if after_name(header, at + 1, len, name, name_len) then
                return nil, "cookie name after a comma"
            end
            at = find(header, ",", at + 1, true)
        end
    end

    local first, last   -- where the value found is: header[first..last]
    local pos = 1
    while pos <= len do
        local piece_end = (find(header, ";", pos, true) or len + 1) - 1
        local value_at = after_name(header, pos, piece_end, name, name_len)
        if value_at then
            local s = skip_ows(header, value_at, piece_end)
            local e = skip_ows_back(header, piece_end, s)
            if not first then
                first, last = s, e
            elseif not same_bytes(header, first, last, s, e) then
                return nil, "cookies of that name with different values"
            end
        end
        pos = piece_end + 2
    end

    if not first then
        return nil
    end
    return sub(header, first, last)
end


-- Splits a cookie value into session id and signature, or returns nil and the
-- reason. Strict on purpose (PROTOCOL.md sections 1 and 2): the size cap comes
-- first so that no work is done on oversized input.
function _M.parse(value)
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


-- true when `value` is a session id a reader accepts (PROTOCOL.md section 1):
-- 16 to 128 characters of [A-Za-z0-9_-].
function _M.is_sid(value)
    local len = type(value) == "string" and #value or 0
    return len >= SID_MIN_LEN and len <= SID_MAX_LEN
           and not find(value, "[^A-Za-z0-9_-]")
end


-- Compares two strings in time that depends only on the length of `given`:
-- every byte is visited, differences are accumulated, there is no early exit.
function _M.equals_constant_time(given, expected)
    local given_len = #given
    local diff = given_len == #expected and 0 or 1
    for i = 1, given_len do
        diff = bor(diff, bxor(byte(given, i), byte(expected, i) or 0))
    end
    return diff == 0
end


-- itsdangerous Signer, key_derivation "hmac", SHA-1:
-- derived_key = HMAC(secret, salt); sig = base64url(HMAC(derived_key, sid)).
function _M.derive_key(secret, salt)
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


-- true when `sig` signs `sid` under one of the derived keys (current first,
-- then the fallbacks), false otherwise.
function _M.verify(keys, sid, sig)
    for i = 1, #keys do
        if signature_matches(keys[i], sid, sig) then
            return true
        end
    end
    return false
end


return _M
