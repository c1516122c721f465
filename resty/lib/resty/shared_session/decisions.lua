-- resty.shared_session.decisions: the decision cache.
--
-- Decisions ("session S may see group G", or may not) kept at two levels,
-- both dropped at once by a revocation notice:
--
-- * In each worker, a bounded table (worker_cache.lua) keyed by the cookie
--   value "<sid>.<sig>", so bound to the signature it was verified for. An
--   entry counts only while the shared revocation count (key "r") still
--   holds the value read before its decisions were made: the subscriber
--   changes it at every notice and every subscription, and it exists only
--   while the subscription is live. An entry also carries the epoch, the
--   not-before mark and the groups' generations it was made under
--   (control.lua), which the count covers as well: heartbeat() gives a new
--   count whenever the mark kept in the dict changed, and
--   generation_changed() whenever a `!generation` notice changed a kept
--   generation. A hit costs that one dict read, with a generation variable
--   too. Positive and negative decisions (a group added publishes a notice
--   as well).
-- * In the lua_shared_dict, for the other workers and for when the count
--   moved on: positive decisions per (sid, group), each under a per-session
--   token that a notice replaces.
--
-- Keys in the dict (a session id never contains ":" or " ", PROTOCOL.md
-- section 1, so with the sid first no two (sid, group) pairs share a key,
-- whatever the group id holds):
--
--   "e"                the epoch: a token that exists only while the revocation
--                      subscriber is subscribed (it expires `heartbeat_ttl`
--                      after Redis last answered, and comes back only after
--                      a PONG: lapsed()); a new one at every SUBSCRIBE
--   "r"                the revocation count: a number, a new one at every
--                      notice, every SUBSCRIBE and every change of the kept
--                      mark, never reused; set and expiring with the epoch
--   "s:<sid>"          the session's token; a revocation notice replaces it
--   "d:<sid>:<group>"  a decision: "<epoch> <session token> <signature>"
--
-- A decision counts only while what it was made under (read before its Redis
-- query was sent) is still current, and only for the cookie signature it was
-- made for. Tokens and counts are never reused, so a key that is gone
-- (expired, evicted, deleted) can only make decisions stop matching:
-- eviction causes misses, never an allow. A notice replaces the session's
-- token first, then the count, so a worker that reads the new count also
-- sees the new token.
--
-- Every function takes `dc`, the decision_cache part of the configuration:
-- { dict = <the lua_shared_dict>, ttl = <seconds>, config_id = <string>,
--   worker = <a worker_cache or nil> }.
--
-- Requests call known (worker level, before the cookie is even parsed;
-- lookup is the same without what the entry was made under), hit (shared
-- level, read-only, before the HMAC), cached (after the HMAC:
-- a hit, or the ticket of the Redis query about to be sent) and store (the
-- answer). The subscriber calls open, heartbeat, lapsed, forget, forget_all,
-- close.

local bit = require "bit"
local worker_cache = require "resty.shared_session.worker_cache"
local session_id = require "resty.shared_session.session_id"

local ngx = ngx
local ngx_log = ngx.log
local ngx_now = ngx.now
local worker_pid = ngx.worker.pid
local INFO = ngx.INFO
local sid_times = session_id.times

local byte = string.byte
local format = string.format
local floor = math.floor
local random = math.random
local bxor = bit.bxor
local bor = bit.bor


local ok_new, new_tab = pcall(require, "table.new")
if not ok_new then
    new_tab = function() return {} end
end


local EPOCH_KEY = "e"
local COUNT_KEY = "r"
local SPACE = byte(" ")

local _M = {
    _VERSION = "0.1.0",
    EPOCH_KEY = EPOCH_KEY,
    COUNT_KEY = COUNT_KEY,
    TTL_MIN = 0.001,        -- s: the dict's expiry resolution (ms)
    TTL_MAX = 10,           -- s, unless every writer publishes
    TTL_MAX_PUBLISHED = 86400,  -- s, when every writer publishes
    -- With all_writers_publish, a decision lives a random share of the ttl
    -- between SPREAD and 1 (store()): decisions made together (an nginx
    -- restart, a traffic spike, a warm-up) do not all end, and ask Redis,
    -- together.
    SPREAD = 0.5,
    -- A worker entry (one cookie) holds at most this many groups' decisions;
    -- past it, it starts afresh (a session asking for endless group ids
    -- cannot grow it without bound).
    GROUPS_PER_ENTRY = 64,
}

local TTL_MIN = _M.TTL_MIN
local GROUPS_PER_ENTRY = _M.GROUPS_PER_ENTRY

-- control.lua's key under an epoch for the not-before mark (read here by
-- heartbeat()).
local MARK_KEY = "m:"
-- s: how long control.lua keeps the mark and a generation in the dict (a
-- bound on a change made behind nginx's back); a worker entry uses its mark
-- and its generations no longer.
local MARK_TTL = 60


-- The per-worker level, for configure(): nil when `entries` is 0.
function _M.new_worker_cache(entries)
    if entries == 0 then
        return nil
    end
    return worker_cache.new(entries)
end


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


-- value == epoch .. " " .. token .. " " .. sig, without building the string;
-- its time depends only on the lengths.
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


-- The worker level --------------------------------------------------------

-- A worker entry is one array, not a table of named fields: with many
-- sessions no CPU cache holds the entries, and a hit pays a trip to memory
-- for every cache line it touches. An array's slots sit side by side (two
-- lines for all of them, beside the table's header), where named fields
-- fall in a hash part three times as large, each in a line of its own. The
-- first group's decision sits in the entry itself (most sessions ask for
-- one group), the others in a table made when a second group comes.
-- (worker_cache.lua's slots: 0, the header, first, for what a hit reads is
-- then in the lines right after the table's header; and 14.)
local E_COUNT = 1       -- the revocation count it was made under
local E_MARK = 2        -- the not-before mark (nil: not known)
local E_MARK_UNTIL = 3  -- until when the mark may be used
local E_DEADLINE = 4    -- ms: the timed id's deadline, or false
local E_GROUP = 5       -- the first group's id,
local E_DECIDED = 6     -- its decision: the expiry of an allow, or minus the
                        -- expiry of a refusal (nil: none),
local E_FRESH = 7       -- until when the session needs no refresh
-- (A hit reads the slots up to here: with the table's header, two or three
-- cache lines. What follows is read when needed.)
local E_SID = 8         -- the session id (a hit builds no string)
local E_GENERATION = 9  -- the first group's generation (nil: not known),
local E_GENERATION_UNTIL = 10   -- used until then
local E_EPOCH = 11
local E_N = 12          -- decisions remembered in it
local E_MORE = 13       -- the other groups: { [group] = { decided,
                        -- generation, generation_until } }, or nil
local ENTRY_SLOTS = worker_cache.LAST_SLOT


-- The decision kept in entry for group_id (nil: none).
local function group_decision(entry, group_id)
    if entry[E_GROUP] == group_id then
        return entry[E_DECIDED]
    end
    local more = entry[E_MORE]
    local slot = more and more[group_id]
    return slot and slot[1]
end


-- The generation kept in entry for group_id, and until when it may be used
-- (nil: not known).
local function group_generation(entry, group_id)
    if entry[E_GROUP] == group_id then
        return entry[E_GENERATION], entry[E_GENERATION_UNTIL]
    end
    local slot = entry[E_MORE][group_id]
    return slot[2], slot[3]
end


-- The session id of a worker entry, and until when the session needs no
-- refresh (refresh.lua), which the caller may move on.
function _M.entry_sid(entry)
    return entry[E_SID]
end

function _M.entry_fresh(entry)
    return entry[E_FRESH]
end

function _M.set_entry_fresh(entry, fresh)
    entry[E_FRESH] = fresh
end


-- Seconds the dict still keeps the not-before mark under epoch (at most
-- MARK_TTL; MARK_TTL when it keeps none).
local function mark_ttl(dc, epoch)
    local ttl = dc.dict:ttl(MARK_KEY .. epoch)
    if ttl and ttl > 0 and ttl < MARK_TTL then
        return ttl
    end
    return MARK_TTL
end


-- Keeps a decision in this worker until `expires`, under `count` (the
-- revocation count read before it was made, and before the mark and the
-- generation were read), `epoch` and `mark` (the not-before mark it was
-- checked against; nil: not known, and then only lookup() uses the entry,
-- not known()), with the group's `generation` (nil: not known). An entry's
-- decisions all share one count, epoch and mark: a decision under others
-- starts the entry afresh.
local function remember(dc, value, sid, group_id, allowed, count, expires,
                        epoch, mark, generation)
    local worker = dc.worker
    if not worker or not count then
        return
    end
    local entry = worker:get(value)
    if not entry or entry[E_COUNT] ~= count or entry[E_EPOCH] ~= epoch
       or entry[E_MARK] ~= mark or entry[E_N] >= GROUPS_PER_ENTRY
    then
        entry = new_tab(ENTRY_SLOTS, 0)
        entry[E_COUNT] = count
        entry[E_EPOCH] = epoch
        entry[E_MARK] = mark
        entry[E_MARK_UNTIL] = 0
        entry[E_N] = 0
        entry[E_SID] = sid
        entry[E_FRESH] = 0
        local _, deadline = sid_times(sid)
        entry[E_DEADLINE] = deadline and deadline ~= 0 and deadline or false
        worker:set(value, entry)
    end
    local now = ngx_now()
    if mark ~= nil then
        -- The mark was read just now (from the dict, or with the query):
        -- used no longer than the dict keeps the mark under the epoch (a
        -- minute from its own reading; heartbeat() does not end the
        -- entries when it expires), and a minute when the dict holds none.
        entry[E_MARK_UNTIL] = now + mark_ttl(dc, epoch)
    end
    entry[E_N] = entry[E_N] + 1
    local decided = allowed and expires or -expires
    local first = entry[E_GROUP]
    if first == nil or first == group_id then
        entry[E_GROUP] = group_id
        entry[E_DECIDED] = decided
        if generation ~= nil then
            entry[E_GENERATION] = generation
            entry[E_GENERATION_UNTIL] = now + MARK_TTL
        end
        return
    end
    local more = entry[E_MORE]
    if not more then
        more = {}
        entry[E_MORE] = more
    end
    local slot = more[group_id]
    if not slot then
        slot = {}
        more[group_id] = slot
    end
    slot[1] = decided
    if generation ~= nil then
        slot[2] = generation
        slot[3] = now + MARK_TTL
    end
end


-- Forgets the decision kept in entry for group_id.
local function forget_decision(entry, group_id)
    if entry[E_GROUP] == group_id then
        entry[E_DECIDED] = nil
        return
    end
    local more = entry[E_MORE]
    local slot = more and more[group_id]
    if slot then
        slot[1] = nil
    end
end


-- This worker's decision for the cookie `value` (the raw "<sid>.<sig>") and
-- group_id: true (allowed), false (refused: not a member), nil (not known);
-- and, when known, the entry (entry_sid, entry_fresh). One dict read, no
-- string built, nothing written: it runs before the cookie is parsed, as an
-- entry exists only for a value whose signature was verified.
function _M.lookup(dc, value, group_id)
    local worker = dc.worker
    local entry = worker and worker:get(value)
    if not entry or entry[E_COUNT] ~= dc.dict:get(COUNT_KEY) then
        return nil
    end
    local expires = group_decision(entry, group_id)
    if not expires then
        return nil
    end
    local now = ngx_now()
    if expires > now then
        return true, entry
    end
    if -expires > now then
        return false, entry
    end
    return nil
end


-- What entry says for group_id now, as known() returns it.
local function answer(dc, entry, group_id, with_generation)
    local mark = entry[E_MARK]
    if mark == nil then
        return nil
    end
    local expires = group_decision(entry, group_id)
    if not expires then
        return nil
    end
    if entry[E_COUNT] ~= dc.dict:get(COUNT_KEY) then
        return nil
    end
    local now = ngx_now()
    if now >= entry[E_MARK_UNTIL] then
        -- The dict's copy of the mark it was checked with has expired (or
        -- a minute passed). When the dict keeps that value again (read
        -- again from Redis by a miss), the entry goes on with it for as
        -- long as the dict keeps it: what the way through the dict would
        -- make of it (control.known, then remember()), for two dict calls.
        local k = MARK_KEY .. entry[E_EPOCH]
        if dc.dict:get(k) ~= mark then
            return nil
        end
        entry[E_MARK_UNTIL] = now + mark_ttl(dc, entry[E_EPOCH])
    end
    local allowed
    if expires > now then
        allowed = true
    elseif -expires > now then
        allowed = false
    else
        return nil
    end
    if not with_generation then
        return allowed, entry, mark
    end
    -- (A decision is kept for group_id, so its slot exists.)
    local generation, generation_until = group_generation(entry, group_id)
    if generation == nil or now >= generation_until then
        return nil
    end
    return allowed, entry, mark, generation
end


-- The same for the hit path, with what the entry was made under: true or
-- false (as lookup), the entry, the not-before mark, and the group's
-- generation when `with_generation` (the one the entry was made with);
-- nil when the worker level cannot answer alone (then the caller asks
-- control.lua and the shared level). One dict read, with a generation too;
-- no string built. With `header` (the Cookie header `value` was read
-- from), an entry that answers is found by that header from now on.
function _M.known(dc, value, group_id, with_generation, header)
    local worker = dc.worker
    local entry = worker and worker:get(value)
    if not entry then
        return nil
    end
    local allowed, _, mark, generation = answer(dc, entry, group_id,
                                                with_generation)
    if allowed ~= nil and header then
        worker:index(entry, header)
    end
    return allowed, entry, mark, generation
end


-- known() before the Cookie header is parsed: the entry is the one last
-- found under exactly this header (so for the same cookie); nil when it
-- cannot answer. A timed id past its deadline is not answered for here
-- (the caller's check of the cookie refuses it).
function _M.known_header(dc, header, group_id, with_generation)
    local worker = dc.worker
    local entry = worker and worker:find_header(header)
    if not entry then
        return nil
    end
    local deadline = entry[E_DEADLINE]
    if deadline and ngx_now() * 1000 >= deadline then
        return nil
    end
    return answer(dc, entry, group_id, with_generation)
end


-- The shared level ----------------------------------------------------------

-- true when the dict holds a valid decision for (sid, sig, group_id) under
-- epoch and token; then also remembered in this worker until it expires
-- (`count` was read before the token), with `mark` and `generation`.
local function shared_hit(dc, value, sid, sig, group_id, count, epoch, token,
                          mark, generation)
    local dict = dc.dict
    local k = key(sid, group_id)
    local found = dict:get(k)
    if not (found and matches(found, epoch, token, sig)) then
        return false
    end
    local ttl = dict:ttl(k)
    if ttl and ttl > 0 then
        remember(dc, value, sid, group_id, true, count, ngx_now() + ttl, epoch,
                 mark, generation)
    end
    return true
end


-- true when a valid decision is cached in the dict for (sid, sig, group_id).
-- Reads only the dict: it runs before the cookie's HMAC is checked, so a
-- forged cookie writes nothing to it. A decision holds the exact signature it
-- was made for, which was verified then, under this configuration's secrets.
-- `mark`: the not-before mark the caller checks the session against (nil:
-- not known), kept with the decision in this worker, as `generation` (the
-- group's, nil when not asked for). `count`: the revocation count, when
-- the caller read it before the mark and generation (control.known); else
-- read here.
function _M.hit(dc, value, sid, sig, group_id, mark, generation, count)
    local dict = dc.dict
    if count == nil then
        count = dict:get(COUNT_KEY)
    end
    local epoch = current_epoch(dc)
    local token = epoch and dict:get("s:" .. sid)
    return token and shared_hit(dc, value, sid, sig, group_id, count, epoch,
                                token, mark, generation) or false
end


-- Like hit(), for a verified cookie; on a miss, also the ticket under which
-- to store the answer of the Redis query about to be sent (nil: the cache is
-- not to be trusted now, store nothing). Must run right before the query is
-- sent: that is what makes a revocation processed while the query is in
-- flight invalidate its answer. `mark`, `generation` and `count` as for
-- hit().
--
-- The ticket may be given `expires_at` (the session's absolute expiry, in
-- seconds as ngx.now(), as read with the query) before store().
function _M.cached(dc, value, sid, sig, group_id, mark, generation, count)
    local dict = dc.dict
    if count == nil then
        count = dict:get(COUNT_KEY)
    end
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

    if shared_hit(dc, value, sid, sig, group_id, count, epoch, token, mark,
                  generation)
    then
        return true
    end
    return nil, {
        value = value, sid = sid, sig = sig, group_id = group_id,
        epoch = epoch, tag = epoch .. " " .. token, count = count,
        started = ngx_now(), expires_at = nil,
    }
end


-- Keeps the answer to a ticket's query, `allowed` or not, until `ttl` after
-- the query was sent, so that no decision lives longer than ttl, even
-- counting the round trip; and never past the session's own expiry when
-- the ticket carries it (`expires_at`: PROTOCOL.md section 7). With
-- `dc.spread` (a share below 1: all_writers_publish), until a random time
-- between spread * ttl and ttl after the query was sent, so that decisions
-- made in the same second end spread over half the ttl. Negative
-- decisions are kept in the worker only. `mark`: the not-before mark the
-- answer was checked against (kept with it in this worker), as the
-- group's `generation` (nil when not asked for).
function _M.store(dc, ticket, allowed, mark, generation)
    local life = dc.ttl
    local spread = dc.spread
    if spread then
        life = life * (spread + (1 - spread) * random())
    end
    local expires = ticket.started + life
    local expires_at = ticket.expires_at
    if expires_at and expires_at < expires then
        expires = expires_at
    end
    local ttl = expires - ngx_now()
    if ttl < TTL_MIN then
        if not allowed then
            -- Too short to keep, but it still replaces an allow kept in
            -- this worker or in the dict.
            local worker = dc.worker
            local entry = worker and worker:get(ticket.value)
            if entry then
                forget_decision(entry, ticket.group_id)
            end
            dc.dict:delete(key(ticket.sid, ticket.group_id))
        end
        return      -- (and 0 would mean "never expires" to the dict)
    end
    remember(dc, ticket.value, ticket.sid, ticket.group_id, allowed,
             ticket.count, expires, ticket.epoch, mark, generation)
    if not allowed then
        -- A fresh refusal replaces an allow kept in the dict (PROTOCOL.md
        -- section 12), which other workers would still use. Deleting can
        -- only cause misses.
        dc.dict:delete(key(ticket.sid, ticket.group_id))
        return
    end
    local ok, err = dc.dict:set(key(ticket.sid, ticket.group_id),
                                ticket.tag .. " " .. ticket.sig, ttl)
    if not ok then
        ngx_log(INFO, "shared_session: decision not cached: ", err)
    end
end


-- The subscriber's side (worker 0) ---------------------------------------

-- Counts are never reused by this process; a new worker 0 (after a crash)
-- starts above any count it could have handed out: 1024 per millisecond of
-- the clock, more notices than Redis delivers.
local last_count = 0

local function next_count()
    local base = floor(ngx_now() * 1000) * 1024
    last_count = last_count + 1
    if last_count < base then
        last_count = base
    end
    return last_count
end


local function publish(dc, live)
    local dict = dc.dict
    dict:set(EPOCH_KEY, live.epoch, live.heartbeat_ttl)
    dict:set(COUNT_KEY, live.count, live.heartbeat_ttl)
end


-- A new subscription (notices may have been missed before it): a new epoch
-- and a new count, kept `heartbeat_ttl` seconds unless renewed. Returns the
-- state the subscriber passes to the functions below.
function _M.open(dc, heartbeat_ttl)
    local live = {
        epoch = fresh_token(), count = next_count(),
        heartbeat_ttl = heartbeat_ttl,
    }
    publish(dc, live)
    return live
end


-- Redis answered: the subscription holds for heartbeat_ttl more. The
-- subscriber calls this after every reply, so right after a `!not-before`
-- notice was applied (control.lua): when the mark kept under the epoch
-- took a value other than the one seen last (a notice, or a miss that read
-- a changed one after the kept one expired), a new count, so that no
-- worker's entry is used with the old mark. Not when it merely expired,
-- nor when it was read again with the value it had: an entry uses its mark
-- no longer than the dict kept it (remember(), answer()), so a new count
-- would only make every worker's entries again (with 20,000 sessions, a
-- minute's worth of slower checks at once, once a minute).
function _M.heartbeat(dc, live)
    live.lapsed = nil
    local epoch = dc.config_id .. "/" .. live.epoch
    if live.mark_key_epoch ~= epoch then
        live.mark_key_epoch = epoch
        live.mark_key = MARK_KEY .. epoch
        live.last_mark = nil
    end
    local mark = dc.dict:get(live.mark_key)
    if mark ~= live.mark then
        -- Expired (nil), or read again with the value it had: no entry
        -- needs ending (an entry uses its mark no longer than the dict
        -- kept it; see remember()).
        local same = mark == nil or mark == live.last_mark
        live.mark = mark
        if mark ~= nil then
            live.last_mark = mark
        end
        if not same then
            live.count = next_count()
        end
    end
    publish(dc, live)
end


-- true once the epoch published last is gone from the dict by itself: no
-- heartbeat() for heartbeat_ttl (Redis silent, or worker 0 stalled), so
-- every worker bypasses the cache. From then on the functions below change
-- `live` but publish nothing (neither key comes back with a notice) until
-- heartbeat() publishes both again, which the subscriber calls only once it
-- knows that no notice sent meanwhile is unread (subscriber.lua). While
-- lapsed, no hit is served (lookup and answer find no count, hit and cached
-- no epoch) and no ticket is given; one given before may still store its
-- answer, under the count and token read before its query, which a notice
-- of a later change ends, read before the epoch is back or after, as for
-- any query in flight.
function _M.lapsed(dc, live)
    if not live.lapsed and dc.dict:get(EPOCH_KEY) ~= live.epoch then
        live.lapsed = true
    end
    return live.lapsed
end


-- Sets the count, unless the epoch has lapsed (see lapsed()).
local function set_count(dc, live)
    if not live.lapsed then
        dc.dict:set(COUNT_KEY, live.count, live.heartbeat_ttl)
    end
end


-- A `!generation` notice changed a kept generation (control.apply): a new
-- count, so that no worker's entry serves the old one.
function _M.generation_changed(dc, live)
    live.count = next_count()
    set_count(dc, live)
end


-- A revocation notice for sid: every decision cached for it stops counting,
-- in the dict (its token) and in every worker (the count).
function _M.forget(dc, sid, live)
    local dict = dc.dict
    local token_key = "s:" .. sid
    local ok, err = dict:replace(token_key, fresh_token(), dc.ttl)
    -- "not found": nothing is cached for it in the dict, and a request that
    -- creates a token from now on sends its query after the change was
    -- committed.
    if not ok and err ~= "not found" then
        dict:delete(token_key)
    end
    live.count = next_count()
    set_count(dc, live)
end


-- A notice that could not be understood: every decision stops counting.
function _M.forget_all(dc, live)
    live.epoch = fresh_token()
    live.count = next_count()
    if not live.lapsed then
        publish(dc, live)
    end
end


-- The subscription is gone: the cache is bypassed until the next open().
function _M.close(dc)
    local dict = dc.dict
    dict:delete(COUNT_KEY)
    dict:delete(EPOCH_KEY)
end


return _M
