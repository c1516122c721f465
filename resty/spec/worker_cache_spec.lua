-- resty.shared_session.worker_cache: a worker's decision entries, bounded,
-- keeping every key used within the last `capacity` insertions.

describe("resty.shared_session.worker_cache", function()
  local worker_cache = require "resty.shared_session.worker_cache"

  it("keeps a key used within the last capacity insertions, as an LRU would", function()
    local cache = worker_cache.new(3)
    cache:set("a", 1)
    for round = 1, 10 do
      cache:set("x" .. round, round)
      cache:set("y" .. round, round)
      assert.equal(1, cache:get("a"))     -- used again: kept
    end
    assert.equal(3, cache:capacity())
  end)

  it("drops a key not used for more than twice the capacity's insertions", function()
    local cache = worker_cache.new(3)
    cache:set("a", 1)
    for i = 1, 6 do
      cache:set("k" .. i, i)
    end
    assert.is_nil(cache:get("a"))
    assert.equal(6, cache:get("k6"))
  end)

  it("holds at most twice its capacity, however many keys come", function()
    local cache = worker_cache.new(5)
    for i = 1, 1000 do
      cache:set("k" .. i, i)
      assert.is_true(cache:count() <= 10)
    end
    -- A key set again is not counted twice.
    cache:set("k1000", 0)
    assert.equal(0, cache:get("k1000"))
    assert.is_true(cache:count() <= 10)
  end)

  it("forgets everything on flush_all", function()
    local cache = worker_cache.new(4)
    cache:set("a", 1)
    cache:set("b", 2)
    cache:flush_all()
    assert.is_nil(cache:get("a"))
    assert.equal(0, cache:count())
  end)
end)
