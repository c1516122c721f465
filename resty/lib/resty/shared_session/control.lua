-- resty.shared_session.control: control from outside the request at nginx
-- (PROTOCOL.md section 13): the not-before mark, group cache generations,
-- the notices that carry them, and the acknowledgements of `!ack` barriers.
--
-- The mark and the generations are Redis values that nginx needs on every
-- request. They are read with the membership query (one round trip, the
-- same as before), and kept in the decision cache's dict only under the
-- subscriber's current epoch (PROTOCOL.md section 7: a token that exists
-- only while the subscription is live), so that a decision-cache hit needs
-- no Redis at all, and a value read before a resubscription is never used
-- after it (it is read again by the next miss). Keys:
--
--   "m:<epoch>"            the mark (ms; 0: none)
--   "g:<epoch>:<group>"    the group's generation
--
-- While the epoch lives, the subscriber overwrites them with every notice
-- (`!not-before <ms>`, `!generation <n> <group>`); a miss only adds them
-- when absent, so a notice applied while its query was in flight wins.
--
-- On Redis Cluster (PROTOCOL.md sections 14.2 and 14.3) each of those keys
-- is in a slot of its own: a miss reads the one it does not keep with a GET
-- on its primary (the layout's lookup), and a notice (which comes once per
-- primary, in any order between them) only ever raises the kept value:
-- both only grow there. The keys' names are the layout's.

local redis = require "resty.shared_session.redis"
local session_id = require "resty.shared_session.session_id"
local decisions = require "resty.shared_session.decisions"
local metrics = require "resty.shared_session.metrics"
local var_setter = require("resty.shared_session.var").setter

local ngx = ngx
local ngx_log = ngx.log
local ngx_null = ngx.null
local timer_at = ngx.timer.at
local INFO = ngx.INFO
local WARN = ngx.WARN

local type = type
local tonumber = tonumber
local tostring = tostring
local byte = string.byte
local find = string.find
local sub = string.sub

local sid_times = session_id.times
local current_epoch = decisions.current_epoch
local COUNT_KEY = decisions.COUNT_KEY
local redis_connect = redis.connect
local clock = metrics.clock
local redis_time = metrics.redis_time
local redis_error = metrics.redis_error


local _M = { _VERSION = "0.1.0" }

-- Seconds an entry is kept: only a bound on memory and on a change made
-- behind nginx's back (a DEL without a notice); notices apply at once.
local ENTRY_TTL = 60
local BANG = byte("!")


-- true when a mark (ms; 0: none) ends the session: a timed id issued before
-- it, or any untimed id while a mark is set (section 13.2: fail closed).
local function refuses(sid, mark)
    if mark == 0 then
        return false
    end
    local issued = sid_times(sid)
    return issued == nil or issued < mark
end
_M.refuses = refuses


-- On the hit path: the epoch (nil: no live subscriber), and the mark and
-- the group's generation as kept under it (mark nil: not known, or the
-- generation is wanted and not known; then the request must ask Redis);
-- last, the revocation count, read before them (decisions.lua: what a
-- worker entry made with them is kept under, so that a notice that changes
-- either, which moves the count on afterwards, is never missed).
function _M.known(dc, group_id, with_generation)
    local dict = dc.dict
    local count = dict:get(COUNT_KEY)
    local epoch = current_epoch(dc)
    if not epoch then
        return nil
    end
    local mark = dict:get("m:" .. epoch)
    if mark == nil then
        return epoch, nil, nil, count
    end
    local generation
    if with_generation then
        generation = dict:get("g:" .. epoch .. ":" .. group_id)
        if generation == nil then
            return epoch, nil, nil, count
        end
    end
    return epoch, mark, generation, count
end


-- After a query sent under `epoch`: keeps what Redis said, unless a notice
-- already set it.
function _M.remember(dc, epoch, group_id, mark, generation)
    local dict = dc.dict
    dict:add("m:" .. epoch, mark, ENTRY_TTL)
    if generation then
        dict:add("g:" .. epoch .. ":" .. group_id, generation, ENTRY_TTL)
    end
end


-- A decimal of 1 to 15 digits as a number (a Redis value or a notice
-- field); nil otherwise.
local function decimal(s)
    if type(s) ~= "string" or #s == 0 or #s > 15 or find(s, "[^0-9]") then
        return nil
    end
    return tonumber(s)
end
_M.decimal = decimal


-- Sets the generation variable (when asked for). false when the variable is
-- not declared in the location (`set $<name> "";`): a cache key without the
-- generation would serve copies that were purged. The rock's own setter:
-- `ngx.var[name] = value` under pcall stops LuaJIT's trace (see var.lua).
function _M.set_generation(variable, generation)
    if not variable then
        return true
    end
    return (var_setter(variable)(tostring(generation)))
end


-- What those GETs answered: the mark (a number; 0: none) and the generation
-- (a number; nil unless asked for), or nil and an error. A value that is not
-- a decimal is an error: no guess is made.
function _M.values(replies, with_generation)
    local raw = replies[1]
    local mark = raw == ngx_null and 0 or decimal(raw)
    if not mark then
        return nil, nil, "redis error: the not-before mark is not a decimal"
                         .. " number of milliseconds"
    end
    if not with_generation then
        return mark
    end
    raw = replies[2]
    local generation = raw == ngx_null and 0 or decimal(raw)
    if not generation then
        return nil, nil, "redis error: a group generation is not a decimal"
    end
    return mark, generation
end


-- Publishes an acknowledgement (from a timer: the subscriber's own
-- connection is in subscribe mode), on any node of the topology `r`.
local function send_ack(premature, r, channel, id)
    if premature then
        return
    end
    local m = r.metrics
    local started = m and clock()
    local red, err = redis_connect(r)
    if red then
        local ok
        ok, err = red:publish(channel, id)
        if ok then
            red:set_keepalive(r.keepalive_timeout, r.pool_size)
            if m then
                redis_time(m, "ack", clock() - started)
            end
            return
        end
        red:close()
    end
    if m then
        redis_error(m, "ack", err)
    end
    ngx_log(WARN, "shared_session: acknowledgement not sent: ", tostring(err))
end


local function ack_id(s)
    return #s >= 1 and #s <= 64 and not find(s, "[^A-Za-z0-9_-]")
end


-- true when `payload` is a notice of section 13.4 (it starts with "!", which
-- no session id holds).
function _M.is_notice(payload)
    return type(payload) == "string" and byte(payload, 1) == BANG
end


-- What a section 13.4 notice says: kind and fields, or nil for one to
-- ignore (unknown kind, malformed fields).
local function parse(payload)
    local space = find(payload, " ", 2, true)
    if not space then
        return nil
    end
    local kind, rest = sub(payload, 2, space - 1), sub(payload, space + 1)
    if kind == "not-before" then
        local ms = decimal(rest)
        return ms and "not-before", ms
    elseif kind == "generation" then
        local second = find(rest, " ", 1, true)
        local n = second and decimal(sub(rest, 1, second - 1))
        local group = second and sub(rest, second + 1)
        if n and group ~= "" then
            return "generation", n, group
        end
    elseif kind == "ack" then
        if ack_id(rest) then
            return "ack", rest
        end
    end
    return nil
end
_M.parse = parse


-- Applies one section 13.4 notice in the subscriber (every earlier notice
-- has been applied already: they are read in order). `r`: the topology,
-- for the acknowledgement. `greatest` (Redis Cluster, sections
-- 14.2 and 14.3: copies in any order): a value only raises the kept one.
-- Returns true when it changed a kept generation: the caller then moves
-- the revocation count on (decisions.generation_changed), as workers'
-- entries carry the generation they were made with. (A changed mark is
-- seen by decisions.heartbeat.) `epoch`: the subscriber's epoch, under
-- which the value is kept even while it has lapsed (decisions.lapsed: a
-- silence; it may be published again, and must not bring back an older
-- value then); by default the current one.
function _M.apply(dc, payload, r, greatest, epoch)
    local kind, a, b = parse(payload)
    if kind == nil then
        ngx_log(INFO, "shared_session: notice ignored (unknown kind or",
                " malformed)")
        return
    end
    if kind == "ack" then
        local ok, err = timer_at(0, send_ack, r, dc.ack_channel, a)
        if not ok then
            ngx_log(WARN, "shared_session: acknowledgement not sent: ", err)
        end
        return
    end
    epoch = epoch or current_epoch(dc)
    if not epoch then
        return      -- no live epoch: nothing is kept, every check asks Redis
    end
    local k = kind == "not-before" and "m:" .. epoch
              or "g:" .. epoch .. ":" .. b
    local kept = dc.dict:get(k)
    if greatest and kept and kept >= a then
        return
    end
    dc.dict:set(k, a, ENTRY_TTL)
    return kind == "generation" and kept ~= a
end


return _M
