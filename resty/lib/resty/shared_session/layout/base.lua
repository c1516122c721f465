-- resty.shared_session.layout.base: what every key layout shares. A
-- layout instance is a keyspace: the key prefix, the layout's key names
-- and the topology (`redis`) its queries run on, built once by
-- configure(). The layouts (v1.lua, cluster.lua, compact.lua) inherit
-- these methods and add their own: key names, the membership query, the
-- refresh's keys and the 0.1.x API's reads.

local redis = require "resty.shared_session.redis"
local control = require "resty.shared_session.control"

local ngx = ngx
local ngx_null = ngx.null

local type = type
local setmetatable = setmetatable
local getmetatable = getmetatable

local get_at = redis.get_at
local control_values = control.values
local decimal = control.decimal


local _M = { _VERSION = "0.1.0" }


-- The fields of an instance: `prefix`, the topology `redis` (also `r`
-- elsewhere), and the keys that name no session, made once.
function _M.fields(prefix, r)
    return {
        prefix = prefix,
        redis = r,
        mark = prefix .. ":not-before",
    }
end


-- The same layout and topology under another prefix (the 0.1.x API takes
-- one per session): this instance when the prefix is its own.
function _M:with_prefix(prefix)
    if prefix == self.prefix then
        return self
    end
    return setmetatable(_M.fields(prefix, self.redis),
                        getmetatable(self))
end


-- PROTOCOL.md section 13: the not-before mark.
function _M:mark_key()
    return self.mark
end


-- PROTOCOL.md section 7: the revocation notices' channel.
function _M:channel()
    return self.prefix .. ":invalidate"
end


-- Section 13.4: where `!ack <id>` notices are answered.
function _M:ack_channel()
    return self.prefix .. ":ack"
end


-- Section 13.3: a group's cache generation.
function _M:generation_key(group_id)
    return self.prefix .. ":group-generation:" .. group_id
end


-- Section 13.1: a user's index of sessions.
function _M:index_key(user)
    return self.prefix .. ":user:" .. user
end


-- The key whose slot is the session's (its id is the hash tag): where a
-- refresh of the session connects.
function _M:slot_key(sid)
    return self.prefix .. ":{" .. sid .. "}"
end


-- A decimal value read with a GET on the key's own primary (absent: 0),
-- or nil and an error.
local function read_decimal(r, k, what)
    local raw, err = get_at(r, k)
    if err then
        return nil, err
    end
    local n = raw == ngx_null and 0 or decimal(raw)
    if not n then
        return nil, "redis error: " .. what .. " is not a decimal"
    end
    return n
end


-- What the PTTL read with the membership says (PROTOCOL.md section 12):
-- the session's remaining life in ms (>= 0), nil when its keys carry no
-- expiry (-1: no bound from the session), false when they are gone (-2).
local function life(pttl)
    if pttl == -2 then
        return false
    end
    if type(pttl) == "number" and pttl >= 0 then
        return pttl
    end
    return nil
end


-- The miss path's question (PROTOCOL.md sections 5, 12 and 13): the
-- session's membership of group_id, its remaining time to live, and with
-- `with_signature` (stored mode) its stored signature, the not-before mark
-- and, with `with_generation`, the group's generation, in one round trip
-- where the topology holds them together; elsewhere (a cluster, sections
-- 14.2 and 14.3) those not kept already (`mark`, `generation`: nil when
-- not) each with a GET on its own primary. Returns the membership (1 or 0
-- as SISMEMBER answers; 0 when the session's keys are gone), nil, the
-- stored signature (ngx.null: none; nil unless asked for), the mark (0:
-- none), the generation (nil unless asked for) and the session's remaining
-- life in ms (nil: its keys carry no expiry); or nil and an error.
function _M:lookup(sid, group_id, with_signature, with_generation, mark,
                   generation)
    local keys
    if with_generation then
        keys = { self.mark, self:generation_key(group_id) }
    else
        keys = { self.mark }
    end
    local member, err, stored, extra, pttl = self:membership(sid, group_id,
        with_signature, self.redis:same_trip(keys))
    if err then
        return nil, err
    end
    local left = life(pttl)
    if left == false then
        -- Gone between the reads of one round trip, or never there.
        member, left = 0, nil
        if with_signature then
            stored = ngx_null
        end
    end
    if extra then
        mark, generation, err = control_values(extra, with_generation)
        if err then
            return nil, err
        end
        return member, nil, stored, mark, generation, left
    end
    if not mark then
        mark, err = read_decimal(self.redis, self.mark, "the not-before mark")
        if not mark then
            return nil, err
        end
    end
    if with_generation and not generation then
        generation, err = read_decimal(self.redis,
                                       self:generation_key(group_id),
                                       "a group generation")
        if not generation then
            return nil, err
        end
    end
    return member, nil, stored, mark, with_generation and generation or nil,
           left
end


return _M
