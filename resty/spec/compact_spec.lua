-- resty.shared_session.compact: the compact layout (PROTOCOL.md section 15)
-- against every case of protocol/compact.json; membership() over it against
-- fake_redis (one GET, the section 13 GETs in the same round trip). The real
-- thing (nginx, redis-server, a cluster) is in t/compact.spec.ts and
-- t/cluster.spec.ts.
local cjson = require "cjson"
local fake_redis = require "fake_redis"

local f = assert(io.open("../protocol/compact.json", "rb"))
local cases = cjson.decode(f:read("*a"))
f:close()

local SID = "3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f"
local SIG = "v1t7MPWDZv3Hf5x8Yc7Ahz2kq-Q"

-- A set's members, sorted (byte order: code point order for UTF-8).
local function sorted(set)
  local list = {}
  for g, yes in pairs(set) do
    assert.is_true(yes)
    list[#list + 1] = g
  end
  table.sort(list)
  return list
end

describe("resty.shared_session.compact", function()
  local stub, restore, compact

  setup(function()
    stub = require "ngx_stub"
    restore = stub.install {
      ["resty.redis"] = false, ["nginx.redis"] = false,
      ["resty.redis.sentinel"] = false, ["nginx.redis.sentinel"] = false,
    }
    compact = require "resty.shared_session.compact"
  end)

  teardown(function()
    restore()
  end)

  describe("key (compact.json)", function()
    for _, case in ipairs(cases.keys) do
      it(case.key, function()
        assert.equal(case.key, compact.key(case.prefix, case.sid))
      end)
    end
    it("is the write case's key", function()
      assert.equal(cases.write.key, compact.key(cases.write.prefix, cases.write.sid))
    end)
  end)

  describe("parse: valid values (compact.json)", function()
    for _, case in ipairs(cases.valid) do
      it(case.why, function()
        local sig, groups, data = compact.parse(case.value)
        assert.equal(case.signature, sig)
        assert.same(case.groups, sorted(groups))
        assert.equal("table", type(data))
        assert.equal(case.idle, data._idle)
      end)
    end
    it("reads what the write case stores", function()
      local sig, groups, data = compact.parse(cases.write.value)
      assert.equal(cases.write.signature, sig)
      assert.same({ "g1" }, sorted(groups))
      assert.same(cjson.decode(cases.write.json), data)
    end)
  end)

  describe("parse: malformed values (compact.json) are no session", function()
    for _, case in ipairs(cases.malformed) do
      it(case.why, function()
        assert.same({}, { compact.parse(case.value) })
      end)
    end
    it("nor is an absent value, or one that is not a string", function()
      assert.is_nil(compact.parse(stub.null))
      assert.is_nil(compact.parse(nil))
      assert.is_nil(compact.parse(12345))
      assert.is_nil(compact.parse({ SIG .. "{}" }))
    end)
    it("nor JSON nested deeper than cjson decodes (never raises)", function()
      assert.is_nil(compact.parse(SIG .. '{"a":' .. ("["):rep(2000) .. ("]"):rep(2000) .. "}"))
    end)
    it("nor numbers that lua-cjson takes by default but JSON does not", function()
      for _, number in ipairs {
        "NaN", "Infinity", "-Infinity", "0x10", "01", "+1", "nan", "inf",
      } do
        assert.is_nil(compact.parse(SIG .. '{"_idle":' .. number .. "}"), number)
      end
      -- Its own instance: the shared cjson.safe keeps its settings.
      assert.is_table(require("cjson.safe").decode('{"a":NaN}'))
    end)
    it("an object as groups grants nothing", function()
      local sig, groups = compact.parse(SIG .. '{"groups":{"1":"g1","g2":"g2"}}')
      assert.equal(SIG, sig)
      assert.same({}, sorted(groups))
    end)
  end)
end)

describe("key_layout = \"compact\" without lua-cjson", function()
  it("is refused by configure()", function()
    local stub = require "ngx_stub"
    local restore = stub.install {
      ["resty.redis"] = false, ["nginx.redis"] = false,
      ["resty.redis.sentinel"] = false, ["nginx.redis.sentinel"] = false,
      ["cjson.safe"] = false,
    }
    local ok, err = pcall(function()
      local config = require "resty.shared_session.config"
      assert.is_false(require("resty.shared_session.compact").has_cjson)
      local conf, message = config.new { key_layout = "compact" }
      assert.is_nil(conf)
      assert.matches('option "key_layout" "compact" needs lua-cjson', message, 1, true)
      assert.is_truthy(config.new { key_layout = "cluster" })
    end)
    restore()
    assert(ok, err)
  end)
end)

describe("resty.shared_session.layout.compact membership", function()
  local stub, restore, server, config, r

  setup(function()
    stub = require "ngx_stub"
  end)

  before_each(function()
    server = fake_redis.server()
    restore = stub.install {
      ["resty.redis"] = server.lib, ["nginx.redis"] = false,
      ["resty.redis.sentinel"] = false, ["nginx.redis.sentinel"] = false,
    }
    config = require "resty.shared_session.config"
    r = assert(config.new { key_layout = "compact", key_prefix = "p" }).keyspace
    server.strings["p:{" .. SID .. "}"] = SIG .. '{"username":"a","groups":["g1","g2",7]}'
  end)

  after_each(function()
    restore()
  end)

  it("is one GET of the one key, answered as SISMEMBER would be (local mode)", function()
    server.ttls["p:{" .. SID .. "}"] = 1500
    assert.same({ 1, nil, nil, nil, 1500 }, { r:membership(SID, "g1") })
    assert.same({ 0, nil, nil, nil, 1500 }, { r:membership(SID, "g3") })
    assert.same({ 0, nil, nil, nil, 1500 }, { r:membership(SID, 7) })     -- not a string member
    assert.same({
      "set_timeout 200", "connect 127.0.0.1:6379 shared_session:127.0.0.1:6379:0",
      "set_timeout 500", "send", "get p:{" .. SID .. "}", "pttl p:{" .. SID .. "}",
      "set_keepalive 60000 64",
    }, { unpack(server.calls, 1, 7) })
    assert.equal(3, server.pooled)
  end)

  it("answers the value's signature in stored mode", function()
    assert.same({ 1, nil, SIG, nil, -1 }, { r:membership(SID, "g2", true) })
    assert.same({ 0, nil, SIG, nil, -1 }, { r:membership(SID, "g9", true) })
  end)

  it("GETs the extra keys (section 13) in the same round trip, replies last", function()
    server.strings["p:not-before"] = "5"
    assert.same({ 1, nil, SIG, { "5", stub.null }, -1 },
                { r:membership(SID, "g1", true, { "p:not-before", "p:other" }) })
    assert.same({
      "send", "get p:{" .. SID .. "}", "get p:not-before", "get p:other",
      "pttl p:{" .. SID .. "}", "set_keepalive 60000 64",
    }, { unpack(server.calls, 4, 9) })
  end)

  it("is no session (0, and no signature) when the key is absent or its value malformed", function()
    server.strings["p:{" .. SID .. "}"] = nil
    assert.same({ 0, nil, stub.null, { stub.null }, -2 },
                { r:membership(SID, "g1", true, { "p:not-before" }) })
    assert.same({ 0, nil, nil, nil, -2 }, { r:membership(SID, "g1") })
    local logged = #stub.log_lines()
    for _, case in ipairs(cases.malformed) do
      server.strings["p:{" .. SID .. "}"] = case.value
      assert.same({ 0, nil, stub.null, nil, -1 }, { r:membership(SID, "g1", true) })
      assert.same({ 0, nil, nil, nil, -1 }, { r:membership(SID, "g1") })
    end
    local lines = stub.log_lines(logged)
    assert.equal(2 * #cases.malformed, #lines)
    -- No event id without a configured secret, and never the id itself.
    assert.matches("malformed session value, treated as no session (session -)",
                   lines[1], 1, true)
    assert.not_matches(SID:sub(1, 6), lines[1], 1, true)
  end)

  it("is nil and 'redis error: ...' on an error reply, and closes the connection", function()
    server.errors.get = "WRONGTYPE Operation against a key holding the wrong kind of value"
    assert.same({ nil, "redis error: WRONGTYPE Operation against a key holding the wrong"
                       .. " kind of value" }, { r:membership(SID, "g1") })
    assert.same({ nil, "redis error: WRONGTYPE Operation against a key holding the wrong"
                       .. " kind of value" },
                { r:membership(SID, "g1", false, { "p:not-before" }) })
    assert.equal(2, server.closed)
  end)

  it("is nil and 'redis unavailable: ...' when Redis cannot be reached", function()
    server.down = "connection refused"
    assert.same({ nil, "redis unavailable: connect: connection refused" },
                { r:membership(SID, "g1", true) })
  end)
end)
