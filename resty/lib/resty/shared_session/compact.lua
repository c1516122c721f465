-- resty.shared_session.compact: the compact layout (PROTOCOL.md section
-- 15): a session is one string key, `<prefix>:{<sid>}`, whose value is the
-- cookie's 27-character signature followed at once by the session's JSON
-- object. The one place that reads such a value.

local type = type
local pcall = pcall
local ipairs = ipairs
local require = require
local find = string.find
local sub = string.sub
local rep = string.rep


-- Section 15.1: a session's JSON is at most 65536 bytes, and at most 1000
-- arrays and objects deep, which is lua-cjson's own decode_max_depth (its
-- default; deeper JSON fails to decode). lua-cjson also refuses the escape
-- of a lone surrogate (`"\ud800"`), which section 15.1 makes malformed for
-- every reader.
local MAX_JSON_BYTES = 65536
local MAX_DEPTH = 1000


-- lua-cjson (OpenResty ships it; Debian: lua-cjson). Optional for the rock:
-- configure() refuses key_layout = "compact" without it. An instance of
-- our own (no setting of anyone else's changes), refusing what is not JSON
-- but lua-cjson takes by default (NaN, Infinity, hexadecimal numbers).
local decode
do
    local ok, cjson = pcall(require, "cjson.safe")
    if ok then
        if cjson.new then
            cjson = cjson.new()
        end
        if cjson.decode_invalid_numbers then
            cjson.decode_invalid_numbers(false)
        end
        if cjson.decode_max_depth then
            cjson.decode_max_depth(MAX_DEPTH)
        end
        decode = cjson.decode
    end
end


local _M = { _VERSION = "0.1.0", has_cjson = decode ~= nil }


-- The signature (27 characters of [A-Za-z0-9_-]), then the `{` that opens
-- the JSON object.
local HEAD = "^" .. rep("[A-Za-z0-9_-]", 27) .. "{"


-- <prefix>:{<sid>}: the session id is the hash tag (section 14), so that
-- sessions spread over a cluster's slots.
function _M.key(prefix, sid)
    return prefix .. ":{" .. sid .. "}"
end


-- Section 15: what a reader finds in a stored value: the signature, the
-- session's groups (a set: group id -> true; the string members of the
-- data's top-level `groups` array) and the data (a table); or nil when the
-- value is absent (ngx.null), not a string, or malformed (shorter than 29
-- bytes, a signature that is not 27 characters of [A-Za-z0-9_-], byte 28
-- not `{`, or the rest not one JSON object within section 15.1's bounds).
-- Never raises.
function _M.parse(value)
    if type(value) ~= "string" or #value < 29 or not find(value, HEAD)
       or #value - 27 > MAX_JSON_BYTES or not decode
    then
        return nil
    end
    -- Byte 28 is `{`: whatever parses from there is an object (cjson
    -- refuses text after it, and whitespace before it cannot occur).
    local data = decode(sub(value, 28))
    if type(data) ~= "table" then
        return nil
    end
    local groups = {}
    local list = data.groups
    if type(list) == "table" then
        -- A JSON array's members are at 1..n (null is cjson.null, not nil);
        -- an object has only string keys, so ipairs finds none in it.
        for _, g in ipairs(list) do
            if type(g) == "string" then
                groups[g] = true
            end
        end
    end
    return sub(value, 1, 27), groups, data
end


return _M
