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
-- header); the slots HEADER (0), VALUE (14) and HASH (15) are this
-- module's, the others the caller's: the Cookie header it was last found
-- under, the cookie value it is kept under, and that header's hash. The
-- hash (a number; the values are strings), so that a request whose header
-- is byte for byte the one seen last finds its entry without making a Lua
-- string of the header or of the cookie in it: no interning (hashing the
-- string, and comparing it with the one already interned, whose bytes are
-- as cold as the entry's), no garbage. find_header() compares the header's
-- bytes with the entry's own copy, in constant time: equal headers hold
-- the same cookie, so the entry is the one find(value) would give.
--
-- Kept true at every step: an entry reachable by a hash is reachable by
-- its value in the same or the newer generation, or its header is false
-- (it was replaced, and matches no header). So a change made through the
-- value (a refusal that replaces an allow, a new entry) is what the header
-- finds too.

local ffi = require "ffi"
local bit = require "bit"

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

local cast = ffi.cast
local bor = bit.bor
local bxor = bit.bxor
local tobit = bit.tobit

local _M = {
    _VERSION = "0.1.0",
    -- An entry's slots: 0 to LAST_SLOT; the cache's: HEADER (the first, next
    -- to what a hit reads), VALUE and HASH (the last two).
    LAST_SLOT = 15,
    HEADER = 0,
    VALUE = 14,
    HASH = 15,
    -- Longer Cookie headers are not indexed (their entries would keep a
    -- copy of them): their requests find the entry by the cookie value.
    MAX_HEADER_LEN = 1024,
}
local mt = { __index = _M }

local VALUE = _M.VALUE
local HEADER = _M.HEADER
local HASH = _M.HASH
local MAX_HEADER_LEN = _M.MAX_HEADER_LEN

local BYTES = ffi.typeof("const uint8_t *")


-- A cache of at least `capacity` cookies (1 or more). Its two tables are
-- made once, each with room for `capacity` cookies and their headers'
-- hashes, and reused: a generation that ends is emptied to become the
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
-- (with its header's hash, when the hash still leads to it).
local function promote(self, key, entry)
    local older = self.older
    older[key] = nil
    local hash = entry[HASH]
    local with_hash = hash and older[hash] == entry
    if with_hash then
        older[hash] = nil
    end
    -- (put may end the generation: `older` is then emptied, to be reused.)
    put(self, key, entry)
    if with_hash then
        self.newer[hash] = entry
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


-- A hash of len bytes at p (a number, never a string: it shares the tables
-- with the cookie values). Not a secret: a forged cookie is never kept, and
-- a collision only makes a request look its entry up by the cookie value.
local function hash_lua(p, len)
    local h = len
    for i = 0, len - 1 do
        h = tobit(h * 33 + p[i])
    end
    return h
end


-- true when the len bytes at p are those of the string s; the time depends
-- only on the lengths.
local function same_bytes_lua(p, len, s)
    if #s ~= len then
        return false
    end
    local q = cast(BYTES, s)
    local diff = 0
    for i = 0, len - 1 do
        diff = bor(diff, bxor(p[i], q[i]))
    end
    return diff == 0
end


-- In nginx, the same through C functions that nginx itself and its OpenSSL
-- export (nginx's ngx_hash_key, OpenSSL's constant-time CRYPTO_memcmp): a
-- loop in Lua is a trace of its own, and the pointers handed to it are
-- boxed (allocated) at every request; a C call stays in the trace of the
-- hit. Outside nginx (the specs), the loops above.
local C = ffi.C
local hash, same_bytes = hash_lua, same_bytes_lua
-- (A declaration another library made already is as good as ours.)
pcall(ffi.cdef, "uintptr_t ngx_hash_key(const unsigned char *, size_t);")
pcall(ffi.cdef, "int CRYPTO_memcmp(const void *, const void *, size_t);")
if pcall(function() return C.ngx_hash_key and C.CRYPTO_memcmp end) then
    hash = function(p, len)
        return tonumber(C.ngx_hash_key(p, len))
    end
    same_bytes = function(p, len, s)
        return #s == len and C.CRYPTO_memcmp(p, s, len) == 0
    end
end
_M.native = hash ~= hash_lua


-- The entry last found under the Cookie header whose len bytes are at p
-- (a pointer to bytes), or nil; then also the header's hash, for index()
-- (nil when the header is too long to be indexed). No Lua string made.
function _M.find_header(self, p, len)
    if len > MAX_HEADER_LEN then
        return nil
    end
    local h = hash(p, len)
    local entry = self.newer[h]
    local older = entry == nil
    if older then
        entry = self.older[h]
        if entry == nil then
            return nil, h
        end
    end
    local header = entry[HEADER]
    if not (header and same_bytes(p, len, header)) then
        return nil, h
    end
    if older then
        local key = entry[VALUE]
        if self.older[key] == entry then
            promote(self, key, entry)
        elseif self.newer[key] == entry then
            self.older[h] = nil
            self.newer[h] = entry
        else
            return nil, h   -- (not reached: a replaced entry has no header)
        end
    end
    return entry
end


-- From now on entry is found under `header` (a string, whose hash
-- find_header() gave), until another header takes the hash or the entry
-- the header. Call it right after get() gave entry for the cookie value
-- that header holds.
function _M.index(self, entry, header, h)
    entry[HEADER] = header
    entry[HASH] = h
    self.newer[h] = entry
end


-- How many cookies are kept (at most 2 * capacity).
function _M.count(self)
    local n = self.n
    for key in pairs(self.older) do
        if type(key) == "string" then
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
