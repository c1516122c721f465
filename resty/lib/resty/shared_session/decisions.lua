-- resty.shared_session.decisions: the decision cache.
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
--
-- Every function takes `dc`, the decision_cache part of the configuration:
-- { dict = <the lua_shared_dict>, ttl = <seconds>, config_id = <string> }.

local bit = require "bit"

local ngx = ngx
local ngx_log = ngx.log
local ngx_now = ngx.now
local worker_pid = ngx.worker.pid
local INFO = ngx.INFO

local byte = string.byte
local format = string.format
local floor = math.floor
local bxor = bit.bxor
local bor = bit.bor


local EPOCH_KEY = "e"
local SPACE = byte(" ")

local _M = {
    _VERSION = "0.1.0",
    EPOCH_KEY = EPOCH_KEY,
    TTL_MIN = 0.001,        -- s: the dict's expiry resolution (ms)
    TTL_MAX = 10,           -- s
}

local TTL_MIN = _M.TTL_MIN


local token_seq = 0     -- per worker; tokens are unique by (pid, ms, seq)

-- A token never handed out before, by any worker.
local function fresh_token()
    token_seq = token_seq + 1
    return format("%x.%x.%x", worker_pid(), floor(ngx_now() * 1000),
                  token_seq)
end
_M.fresh_token = fresh_token


-- The dict key of the decision for (sid, group_id).
local function key(sid, group_id)
    return "d:" .. sid .. ":" .. group_id
end
_M.key = key


-- value == epoch .. " " .. token .. " " .. sig, without building the string
-- (this runs on every cache hit); its time depends only on the lengths.
local function matches(value, epoch, token, sig)
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
-- (control.lua keeps the not-before mark and generations under it too.)
_M.current_epoch = current_epoch


-- true when a valid decision is cached for (sid, sig, group_id). Reads only:
-- it runs before the cookie's HMAC is checked, so a forged cookie writes
-- nothing to the dict. A decision holds the exact signature it was made for,
-- which was verified then, under this configuration's secrets.
function _M.hit(dc, sid, sig, group_id)
    local dict = dc.dict
    local epoch = current_epoch(dc)
    local token = epoch and dict:get("s:" .. sid)
    local value = token and dict:get(key(sid, group_id))
    return value and matches(value, epoch, token, sig) or false
end


-- Like hit(), for a verified cookie; on a miss, also the tag to store a
-- decision under if the one about to be asked of Redis is positive (nil: the
-- cache is not to be trusted now, store nothing). Must run before the Redis
-- query is sent: that is what makes a revocation processed while the query
-- is in flight invalidate its answer.
function _M.cached(dc, sid, sig, group_id)
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

    local value = dict:get(key(sid, group_id))
    if value and matches(value, epoch, token, sig) then
        return true
    end
    return nil, epoch .. " " .. token
end


-- Keeps a positive decision until `ttl` after its query was sent (`started`),
-- so that no decision lives longer than ttl, even counting the round trip.
function _M.store(dc, sid, sig, group_id, tag, started)
    local ttl = dc.ttl - (ngx_now() - started)
    if ttl < TTL_MIN then
        return      -- (and 0 would mean "never expires" to the dict)
    end
    local ok, err = dc.dict:set(key(sid, group_id), tag .. " " .. sig, ttl)
    if not ok then
        ngx_log(INFO, "shared_session: decision not cached: ", err)
    end
end


-- A revocation notice for sid: every decision cached for it stops counting.
function _M.forget(dc, sid)
    local dict = dc.dict
    local token_key = "s:" .. sid
    local ok, err = dict:replace(token_key, fresh_token(), dc.ttl)
    -- "not found": nothing is cached for it, and a request that creates a
    -- token from now on sends its query after the change was committed.
    if not ok and err ~= "not found" then
        dict:delete(token_key)
    end
end


return _M
