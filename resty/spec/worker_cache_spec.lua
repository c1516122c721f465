-- resty.shared_session.worker_cache: a worker's decision entries, bounded,
-- keeping every key used within the last `capacity` insertions, and found
-- by the exact bytes of the Cookie header they were last found under.

describe("resty.shared_session.worker_cache", function()
  local ffi = require "ffi"
  local worker_cache = require "resty.shared_session.worker_cache"

  -- An entry: an array, some of whose slots are the cache's.
  local function entry(n)
    return { [1] = n }
  end

  -- What find_header() is given: the header's bytes, as nginx keeps them.
  local function find(cache, header)
    local copy = ffi.new("uint8_t[?]", #header)
    ffi.copy(copy, header, #header)
    return cache:find_header(copy, #header)
  end

  -- A lookup by the value, then (as decisions.known does) the header
  -- indexed for the entry found.
  local function get_by(cache, value, header)
    local _, h = find(cache, header)
    local e = cache:get(value)
    if e and h then
      cache:index(e, header, h)
    end
    return e
  end

  it("keeps a key used within the last capacity insertions, as an LRU would", function()
    local cache = worker_cache.new(3)
    local a = entry(1)
    cache:set("a", a)
    for round = 1, 10 do
      cache:set("x" .. round, entry(round))
      cache:set("y" .. round, entry(round))
      assert.equal(a, cache:get("a"))     -- used again: kept
    end
    assert.equal(3, cache:capacity())
  end)

  it("drops a key not used for more than twice the capacity's insertions", function()
    local cache = worker_cache.new(3)
    cache:set("a", entry(1))
    local last
    for i = 1, 6 do
      last = entry(i)
      cache:set("k" .. i, last)
    end
    assert.is_nil(cache:get("a"))
    assert.equal(last, cache:get("k6"))
  end)

  it("holds at most twice its capacity, however many keys come", function()
    local cache = worker_cache.new(5)
    for i = 1, 1000 do
      cache:set("k" .. i, entry(i))
      get_by(cache, "k" .. i, "session=k" .. i)     -- a header too
      assert.is_true(cache:count() <= 10)
    end
    -- A key set again is not counted twice.
    local again = entry(0)
    cache:set("k1000", again)
    assert.equal(again, cache:get("k1000"))
    assert.is_true(cache:count() <= 10)
  end)

  it("forgets everything on flush_all", function()
    local cache = worker_cache.new(4)
    cache:set("a", entry(1))
    get_by(cache, "a", "session=a")
    cache:flush_all()
    assert.is_nil(cache:get("a"))
    assert.is_nil(find(cache, "session=a"))
    assert.equal(0, cache:count())
  end)

  describe("by the Cookie header", function()
    it("finds an entry by the exact bytes of the header it was indexed under", function()
      local cache = worker_cache.new(4)
      local a = entry(1)
      cache:set("a", a)
      assert.is_nil(find(cache, "session=a; theme=dark"))   -- not indexed yet
      assert.equal(a, get_by(cache, "a", "session=a; theme=dark"))
      assert.equal(a, find(cache, "session=a; theme=dark"))
      -- One byte different, longer, shorter: not found.
      assert.is_nil(find(cache, "session=a; theme=darl"))
      assert.is_nil(find(cache, "session=a; theme=dark "))
      assert.is_nil(find(cache, "session=a; theme=dar"))
    end)

    it("compares the bytes, not only their hash", function()
      -- h * 33 + byte: "aB" and "b!" hash alike (97 * 33 + 66 = 98 * 33 + 33).
      if worker_cache.native then
        return      -- (nginx's hash: no such pair at hand)
      end
      local cache = worker_cache.new(4)
      local a = entry(1)
      cache:set("aB", a)
      local _, h1 = find(cache, "session=aB")
      local _, h2 = find(cache, "session=b!")
      assert.equal(h1, h2)
      get_by(cache, "aB", "session=aB")
      assert.equal(a, find(cache, "session=aB"))
      assert.is_nil(find(cache, "session=b!"))
    end)

    it("follows the header the value was last found under", function()
      local cache = worker_cache.new(4)
      local a = entry(1)
      cache:set("a", a)
      get_by(cache, "a", "session=a; n=1")
      get_by(cache, "a", "session=a; n=2")
      assert.equal(a, find(cache, "session=a; n=2"))
      assert.is_nil(find(cache, "session=a; n=1"))
    end)

    it("never finds an entry that a new one replaced under its value", function()
      local cache = worker_cache.new(4)
      local old = entry(1)
      cache:set("a", old)
      get_by(cache, "a", "session=a")
      local new = entry(2)
      cache:set("a", new)
      assert.is_nil(find(cache, "session=a"))
      assert.equal(new, get_by(cache, "a", "session=a"))
      assert.equal(new, find(cache, "session=a"))
    end)

    it("keeps an entry found by its header as if found by its value, drops both at once", function()
      local cache = worker_cache.new(2)
      local a = entry(1)
      cache:set("a", a)
      get_by(cache, "a", "session=a")
      for round = 1, 10 do
        cache:set("x" .. round, entry(round))
        cache:set("y" .. round, entry(round))
        -- Used by its header alone: kept, under its value too.
        assert.equal(a, find(cache, "session=a"))
      end
      assert.equal(a, cache:get("a"))
      for i = 1, 4 do
        cache:set("k" .. i, entry(i))
      end
      assert.is_nil(find(cache, "session=a"))
      assert.is_nil(cache:get("a"))
    end)

    it("does not index a header longer than MAX_HEADER_LEN", function()
      local cache = worker_cache.new(2)
      local header = "session=a; x=" .. ("y"):rep(worker_cache.MAX_HEADER_LEN)
      local found, h = find(cache, header)
      assert.is_nil(found)
      assert.is_nil(h)
    end)
  end)
end)
