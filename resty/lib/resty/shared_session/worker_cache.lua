-- resty.shared_session.worker_cache: a worker's decision entries, by cookie,
-- and by the Cookie header they were last found under.
--
-- Two plain Lua tables, the newer and the older generation, instead of an
-- LRU list. A get that finds its key in the newer one is one table read:
-- with many sessions (20,000 cookies are 20,000 entries, far more memory
-- than the CPU's caches hold), every line a hit touches costs a trip to
-- memory, and lua-resty-lrucache's get touches five of them (its two
-- tables, the node, and the two neighbours it unlinks it from), this one
-- one or two. A key found in the older generation moves to the newer one;
-- when the newer one holds `capacity` keys, it becomes the older one and
-- the older one is dropped. So a key used within the last `capacity`
-- insertions is always kept (as an LRU of `capacity` would), and at most
-- 2 * capacity entries are held.
--
-- An entry is an array of the slots 0 to 15 (table.new(15, 0): at most 16
-- slots are allocated with the table itself, in the lines right after its
-- header); the slots HEADER (0) and VALUE (14) are this module's, the
-- others the caller's: the Cookie header it was last found under, and the
-- cookie value it is kept under. A request whose Cookie header is the one
-- seen last finds its entry by that header (a string, as nginx gives it)
-- without parsing it: the tables hold the headers as keys beside the
-- values. A header never equals a cookie value (a value kept here has been
-- verified, so holds only [A-Za-z0-9_.-], and a header that holds it holds
-- "name=" too), and find_header() checks that the entry found is still
-- the header's (the same string: LuaJIT interns strings, so equal bytes
-- are one object and the check is one comparison): equal headers hold the
-- same cookie, so the entry is the one get(value) would give.
--
-- Kept true at every step: an entry reachable by a header is reachable by
-- its value in the same or the newer generation, or its header is false
-- (it was replaced, and matches no header). So a change made through the
-- value (a refusal that replaces an allow, a new entry) is what the header
-- finds too.

local ok_new, new_tab = pcall(require, "table.new")
if not ok_new then
    new_tab = function() return {} end
end
local ok_clear, clear_tab = pcall(require, "table.clear")
if not ok_clear then
    clear_tab = function(t)
        for k in pairs(t) do
            t[k] = nil
        end
    end
end

local _M = {
    _VERSION = "0.1.0",
    -- An entry's slots: 0 to LAST_SLOT; the cache's: HEADER (the first, next
    -- to what a hit reads) and VALUE.
    LAST_SLOT = 15,
    HEADER = 0,
    VALUE = 14,
    -- Longer Cookie headers are not indexed (their entries would keep a
    -- copy of them): their requests find the entry by the cookie value.
    MAX_HEADER_LEN = 1024,
}
local mt = { __index = _M }

local VALUE = _M.VALUE
local HEADER = _M.HEADER
local MAX_HEADER_LEN = _M.MAX_HEADER_LEN


-- A cache of at least `capacity` cookies (1 or more). Its two tables are
-- made once, each with room for `capacity` cookies and their headers,
-- and reused: a generation that ends is emptied to become the
-- newer one (table.clear keeps its room), so the cache neither allocates
-- nor leaves garbage as cookies come and go. (With 20,000 cookies a table
-- is 1.5 MB: a new one per generation made the GC run through every entry
-- several times as often.)
function _M.new(capacity)
    return setmetatable({
        size = capacity, n = 0,
        newer = new_tab(0, 2 * capacity), older = new_tab(0, 2 * capacity),
    }, mt)
end


-- Keeps entry under the cookie value `key` in the newer generation.
local function put(self, key, entry)
    local newer = self.newer
    if newer[key] == nil then
        if self.n >= self.size then
            local dropped = self.older
            self.older = newer
            clear_tab(dropped)
            newer = dropped
            self.newer = newer
            self.n = 0
        end
        self.n = self.n + 1
    end
    newer[key] = entry
end


-- entry, found under `key` in the older generation, moves to the newer one
-- (with its header, when the header still leads to it).
local function promote(self, key, entry)
    local older = self.older
    older[key] = nil
    local header = entry[HEADER]
    local with_header = header and older[header] == entry
    if with_header then
        older[header] = nil
    end
    -- (put may end the generation: `older` is then emptied, to be reused.)
    put(self, key, entry)
    if with_header then
        self.newer[header] = entry
    end
end


-- The entry kept for the cookie value `key`, or nil.
function _M.get(self, key)
    local entry = self.newer[key]
    if entry ~= nil then
        return entry
    end
    entry = self.older[key]
    if entry ~= nil then
        promote(self, key, entry)
    end
    return entry
end


-- Keeps entry (an array) under the cookie value `key`. An entry it
-- replaces stops matching any header.
function _M.set(self, key, entry)
    local old = self.newer[key] or self.older[key]
    if old ~= nil and old ~= entry then
        old[HEADER] = false
        self.older[key] = nil
    end
    entry[VALUE] = key
    put(self, key, entry)
end


-- The entry last found under the Cookie header `header` (a string), or
-- nil. Nothing parsed, nothing made.
function _M.find_header(self, header)
    local entry = self.newer[header]
    local older = entry == nil
    if older then
        entry = self.older[header]
        if entry == nil then
            return nil
        end
    end
    if entry[HEADER] ~= header then
        return nil
    end
    if older then
        local key = entry[VALUE]
        if self.older[key] == entry then
            promote(self, key, entry)
        elseif self.newer[key] == entry then
            self.older[header] = nil
            self.newer[header] = entry
        else
            return nil  -- (not reached: a replaced entry has no header)
        end
    end
    return entry
end


-- From now on entry is found under `header` (a string), until another
-- entry takes the header or the entry another header. Call it right after
-- get() gave entry for the cookie value that header holds. A header longer
-- than MAX_HEADER_LEN is not kept (the entry would keep a copy of it):
-- its requests find the entry by the cookie value.
function _M.index(self, entry, header)
    if #header > MAX_HEADER_LEN then
        return
    end
    local old = entry[HEADER]
    if old and old ~= header and self.newer[old] == entry then
        self.newer[old] = nil
    end
    entry[HEADER] = header
    self.newer[header] = entry
end


-- How many cookies are kept (at most 2 * capacity).
function _M.count(self)
    local n = self.n
    for key, entry in pairs(self.older) do
        if entry[VALUE] == key then     -- (not a header)
            n = n + 1
        end
    end
    return n
end


function _M.capacity(self)
    return self.size
end


-- Forgets every key.
function _M.flush_all(self)
    clear_tab(self.newer)
    clear_tab(self.older)
    self.n = 0
end


return _M
