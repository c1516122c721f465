-- resty.shared_session.worker_cache: a worker's decision entries, by cookie.
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

local ok_new, new_tab = pcall(require, "table.new")
if not ok_new then
    new_tab = function() return {} end
end

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }


-- A cache of at least `capacity` keys (1 or more).
function _M.new(capacity)
    return setmetatable({
        size = capacity, newer = new_tab(0, capacity), n = 0, older = {},
    }, mt)
end


-- The value kept for key, or nil.
function _M.get(self, key)
    local value = self.newer[key]
    if value ~= nil then
        return value
    end
    value = self.older[key]
    if value ~= nil then
        self.older[key] = nil
        self:set(key, value)
    end
    return value
end


-- Keeps value under key (in the newer generation).
function _M.set(self, key, value)
    local newer = self.newer
    if newer[key] == nil then
        if self.n >= self.size then
            self.older = newer
            newer = new_tab(0, self.size)
            self.newer = newer
            self.n = 0
        end
        self.n = self.n + 1
    end
    newer[key] = value
end


-- How many keys are kept (at most 2 * capacity).
function _M.count(self)
    local n = self.n
    for _ in pairs(self.older) do
        n = n + 1
    end
    return n
end


function _M.capacity(self)
    return self.size
end


-- Forgets every key.
function _M.flush_all(self)
    self.newer = new_tab(0, self.size)
    self.older = {}
    self.n = 0
end


return _M
