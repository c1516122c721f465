-- resty.shared_session.worker_cache: a worker's decision entries, bounded,
-- keeping every key used within the last `capacity` insertions, and found
-- by the exact bytes of the Cookie header they were last found under.

describe("resty.shared_session.worker_cache", function()
  local worker_cache = require "resty.shared_session.worker_cache"

  -- An entry: an array, some of whose slots are the cache's.
  local function entry(n)
    return { [1] = n }
  end

  -- What find_header() is given: the header, a string made from nginx's
  -- bytes (a copy: equal bytes, whatever object they came from).
  local function find(cache, header)
    return cache:find_header(table.concat({ header:sub(1, 1), header:sub(2) }))
  end

  -- A lookup by the value, then (as decisions.known does) the header
  -- indexed for the entry found.
  local function get_by(cache, value, header)
    local e = cache:get(value)
    if e then
      cache:index(e, header)
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

    it("does not take a cookie value for a header", function()
      -- (Both are keys of the same tables: a kept value holds no "=", a
      -- header does, and an entry found is checked to be the header's.)
      local cache = worker_cache.new(4)
      local a = entry(1)
      cache:set("a", a)
      get_by(cache, "a", "session=a")
      assert.equal(a, find(cache, "session=a"))
      assert.is_nil(find(cache, "a"))
      assert.equal(a, cache:get("a"))
    end)

    it("keeps one header per entry: the one it was last found under", function()
      local cache = worker_cache.new(4)
      local a = entry(1)
      cache:set("a", a)
      for i = 1, 100 do
        get_by(cache, "a", "session=a; n=" .. i)
      end
      local keys = 0
      for _ in pairs(cache.newer) do
        keys = keys + 1
      end
      assert.equal(2, keys)     -- the value and the last header
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
      local a = entry(1)
      cache:set("a", a)
      local header = "session=a; x=" .. ("y"):rep(worker_cache.MAX_HEADER_LEN)
      assert.equal(a, get_by(cache, "a", header))
      assert.is_nil(find(cache, header))
    end)
  end)
end)
