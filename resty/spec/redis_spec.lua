-- resty.shared_session.redis: the key layout (PROTOCOL.md section 3), the
-- connections of the checks and the primary named by Sentinel, against
-- fake_redis. Real Redis and Sentinel are tested under t/ and reliability/.
local fake_redis = require "fake_redis"

local SID = "3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f"

describe("resty.shared_session.redis", function()
  local stub, restore, server, config, redis

  setup(function()
    stub = require "ngx_stub"
  end)

  -- Loads the rock with a fresh fake server as its redis library (and its
  -- sentinel library).
  before_each(function()
    server = fake_redis.server()
    restore = stub.install {
      ["resty.redis"] = server.lib, ["nginx.redis"] = false,
      ["resty.redis.sentinel"] = server.sentinel_lib, ["nginx.redis.sentinel"] = false,
    }
    config = require "resty.shared_session.config"
    redis = require "resty.shared_session.redis"
  end)

  after_each(function()
    restore()
  end)

  -- The keyspace (prefix "p") of a configuration with these redis options;
  -- its topology is .redis.
  local function redis_options(opts)
    return assert(config.new { key_prefix = "p", redis = opts }).keyspace
  end

  describe("key", function()
    local function keyspace(layout, prefix)
      return assert(config.new { key_layout = layout, key_prefix = prefix }).keyspace
    end

    it("is <prefix>:<kind>:<sid> on the v1 layout", function()
      assert.equal("resty_shared_session:groups:" .. SID,
                   assert(config.new {}).keyspace:groups_key(SID))
      assert.equal("{app}:signature:" .. SID, keyspace("v1", "{app}"):signature_key(SID))
      assert.equal("p:data:" .. SID, keyspace(nil, "p"):data_key(SID))
      assert.equal("p:data:" .. SID, keyspace("v1", "p"):data_key(SID))
    end)
    it("is <prefix>:{<sid>}:<kind> on the cluster layout", function()
      local ks = keyspace("cluster", "p")
      assert.equal("p:{" .. SID .. "}:groups", ks:groups_key(SID))
      assert.equal("p:{" .. SID .. "}:signature", ks:signature_key(SID))
      assert.equal("p:{" .. SID .. "}:data", ks:data_key(SID))
    end)
    it("is <prefix>:{<sid>} on the compact layout, and the same control keys on each", function()
      assert.equal("p:{" .. SID .. "}", keyspace("compact", "p"):session_key(SID))
      for _, layout in ipairs { "v1", "cluster", "compact" } do
        local ks = keyspace(layout, "p")
        assert.equal("p:not-before", ks:mark_key())
        assert.equal("p:group-generation:g1", ks:generation_key("g1"))
        assert.equal("p:user:alice", ks:index_key("alice"))
      end
    end)
  end)

  describe("connect_options", function()
    it("names one pool per server and database", function()
      assert.same({ pool = "shared_session:10.0.0.1:6380:2", pool_size = 5 },
                  redis.connect_options("10.0.0.1", 6380, 2, 5))
    end)
  end)

  describe("membership", function()
    local r

    before_each(function()
      r = redis_options {}
      server.sets["p:groups:" .. SID] = { g1 = true }
      server.strings["p:signature:" .. SID] = "sig"
    end)

    it("asks SISMEMBER on a pooled connection (local mode)", function()
      server.ttls["p:groups:" .. SID] = 2000
      assert.same({ 1, nil, nil, nil, 2000 }, { r:membership(SID, "g1") })
      assert.same({ 0, nil, nil, nil, 2000 }, { r:membership(SID, "g2") })
      assert.same({
        "set_timeout 200", "connect 127.0.0.1:6379 shared_session:127.0.0.1:6379:0",
        "set_timeout 500", "send", "sismember p:groups:" .. SID .. " g1",
        "pttl p:groups:" .. SID, "set_keepalive 60000 64",
      }, { unpack(server.calls, 1, 7) })
      assert.equal(2, server.pooled)
      assert.equal(0, server.closed)
    end)

    it("also GETs the stored signature, in the same round trip (stored mode)", function()
      assert.same({ 1, nil, "sig", nil, -1 }, { r:membership(SID, "g1", true) })
      assert.same({
        "send", "get p:signature:" .. SID, "sismember p:groups:" .. SID .. " g1",
        "pttl p:groups:" .. SID, "set_keepalive 60000 64",
      }, { unpack(server.calls, 4, 8) })
      server.strings["p:signature:" .. SID] = nil
      assert.same({ 0, nil, stub.null, nil, -1 }, { r:membership(SID, "g2", true) })
    end)

    it("GETs the extra keys (section 13) in the same round trip, replies last", function()
      server.strings["p:not-before"] = "5"
      assert.same({ 1, nil, nil, { "5", stub.null }, -1 },
                  { r:membership(SID, "g1", false, { "p:not-before", "p:other" }) })
      assert.same({
        "send", "sismember p:groups:" .. SID .. " g1", "get p:not-before", "get p:other",
        "pttl p:groups:" .. SID, "set_keepalive 60000 64",
      }, { unpack(server.calls, 4, 9) })
      assert.same({ 0, nil, "sig", { "5" }, -1 },
                  { r:membership(SID, "g2", true, { "p:not-before" }) })
    end)

    it("lookup: the life left from PTTL; nil with no expiry; gone: no session", function()
      server.ttls["p:groups:" .. SID] = 1500
      assert.same({ 1, nil, "sig", 0, nil, 1500 }, { r:lookup(SID, "g1", true) })
      server.ttls["p:groups:" .. SID] = -1
      assert.same({ 1, nil, "sig", 0 }, { r:lookup(SID, "g1", true) })
      -- Gone between the reads of the round trip: refused, as no session.
      server.ttls["p:groups:" .. SID] = -2
      assert.same({ 0, nil, stub.null, 0 }, { r:lookup(SID, "g1", true) })
      assert.same({ 0, nil, nil, 0 }, { r:lookup(SID, "g1") })
    end)

    it("sends AUTH and SELECT on new connections only", function()
      server.password = "pw"
      r = redis_options { password = "pw", db = 3 }
      assert.equal(1, r:membership(SID, "g1"))
      assert.same({ "auth pw", "select 3" }, { server.calls[4], server.calls[5] })
      server.calls = {}
      server.reused = 1
      assert.equal(1, r:membership(SID, "g1"))
      for _, call in ipairs(server.calls) do
        assert.is_nil(call:find("^auth") or call:find("^select"))
      end
    end)

    it("is nil and 'redis unavailable: ...' when it cannot connect", function()
      server.down = "connection refused"
      assert.same({ nil, "redis unavailable: connect: connection refused" },
                  { r:membership(SID, "g1") })
      server.down = nil
      server.password = "other"
      r = redis_options { password = "pw" }
      assert.same({ nil, "redis unavailable: auth: WRONGPASS invalid username-password pair" },
                  { r:membership(SID, "g1") })
      assert.equal(1, server.closed)
      assert.equal(0, server.pooled)
    end)

    it("is nil and 'redis error: ...' on an error, and closes the connection", function()
      server.errors.sismember = "ERR boom"
      assert.same({ nil, "redis error: ERR boom" }, { r:membership(SID, "g1") })
      assert.same({ nil, "redis error: ERR boom" },
                  { r:membership(SID, "g1", true) })
      server.errors = { get = "WRONGTYPE" }
      assert.same({ nil, "redis error: WRONGTYPE" },
                  { r:membership(SID, "g1", true) })
      server.errors = { send = "timeout" }
      assert.same({ nil, "redis error: timeout" },
                  { r:membership(SID, "g1", true) })
      assert.equal(4, server.closed)
      assert.equal(0, server.pooled)
    end)

    it("sends the commands as bulk strings, whatever bytes the group id holds", function()
      server.sets["p:groups:" .. SID] = { ["g 1\r\nFLUSHALL"] = true }
      assert.same({ 1, nil, nil, nil, -1 }, { r:membership(SID, "g 1\r\nFLUSHALL") })
      assert.equal("sismember p:groups:" .. SID .. " g 1\r\nFLUSHALL", server.calls[5])
      assert.equal(1, server.pooled)
    end)

    it("closes, never pools, a connection whose replies were not all read", function()
      -- The first reply comes, the second does not (a timeout): the
      -- connection still owes a reply, which must reach no later request.
      server.replies_sent = 1
      assert.same({ nil, "redis error: timeout" },
                  { r:membership(SID, "g1", true) })
      server.replies_sent = 0
      assert.same({ nil, "redis error: timeout" }, { r:membership(SID, "g1") })
      assert.same({ 2, 0 }, { server.closed, server.pooled })
      server.replies_sent = math.huge
      assert.same({ 0, nil, "sig", nil, -1 }, { r:membership(SID, "g2", true) })
      assert.same({ 2, 1 }, { server.closed, server.pooled })
    end)

    it("is nil and an error without a redis library", function()
      restore()
      restore = stub.install {
        ["resty.redis"] = false, ["nginx.redis"] = false,
        ["resty.redis.sentinel"] = false, ["nginx.redis.sentinel"] = false,
      }
      local without = require "resty.shared_session.redis"
      assert.is_false(without.has_sentinel)
      r = assert(require("resty.shared_session.config").new { key_prefix = "p" }).keyspace
      assert.same({ nil, "redis unavailable: no redis client library (resty.redis"
                         .. " or nginx.redis)" },
                  { r:membership(SID, "g1") })
    end)
  end)

  describe("on a cluster", function()
    local r
    local NODE, OTHER = "127.0.0.1:7000", "127.0.0.1:7001"
    local NODES = { nodes = { { host = "127.0.0.1", port = 7000 } } }
    local WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"

    -- `message` (a MOVED or ASK naming OTHER) from NODE, the reply from OTHER.
    local function redirect(message)
      return function(conn)
        if conn.address == NODE then
          return message
        end
      end
    end

    before_each(function()
      server.slots = { { 0, 16383, { "127.0.0.1", 7000 } } }
      server.sets["p:{" .. SID .. "}:groups"] = { g1 = true }
      server.strings["p:{" .. SID .. "}:signature"] = "sig"
      server.strings["p:{" .. SID .. "}"] = ("A"):rep(27) .. '{"groups":["g1"]}'
      server.strings.k = "v"
      r = assert(config.new {
        key_layout = "cluster", key_prefix = "p", redis = { cluster = NODES },
      }).keyspace
    end)

    it("follows an ASK: ASKING then the same commands on the node it names", function()
      server.errors.sismember = redirect("ASK 866 " .. OTHER)
      assert.same({ 1, nil, "sig", nil, -1 }, { r:membership(SID, "g1", true) })
      local calls = {}
      for _, call in ipairs(server.calls) do
        if not call:find("^set_timeout") then
          calls[#calls + 1] = call
        end
      end
      assert.same({
        "connect " .. NODE .. " shared_session:127.0.0.1:7000:0", "cluster slots",
        "set_keepalive 60000 64",
        "connect " .. NODE .. " shared_session:127.0.0.1:7000:0",
        "send", "get p:{" .. SID .. "}:signature", "sismember p:{" .. SID .. "}:groups g1",
        "pttl p:{" .. SID .. "}:groups", "set_keepalive 60000 64",
        "connect " .. OTHER .. " shared_session:127.0.0.1:7001:0",
        "send", "asking", "get p:{" .. SID .. "}:signature",
        "asking", "sismember p:{" .. SID .. "}:groups g1",
        "asking", "pttl p:{" .. SID .. "}:groups",
        "set_keepalive 60000 64",
      }, calls)
      assert.same({ 0, 3 }, { server.closed, server.pooled })
    end)

    it("follows a MOVED, and an ASK for the compact layout's GETs and get_at", function()
      server.errors.sismember = redirect("MOVED 866 " .. OTHER)
      assert.same({ 0, nil, nil, nil, -1 }, { r:membership(SID, "g2") })
      server.errors = { get = redirect("ASK 866 " .. OTHER) }
      assert.same({ "v" }, { redis.get_at(r.redis, "k") })
      local compact = assert(config.new {
        key_layout = "compact", key_prefix = "p", redis = { cluster = NODES },
      }).keyspace
      assert.same({ 1, nil, ("A"):rep(27), nil, -1 }, { compact:membership(SID, "g1", true) })
      assert.same({ "asking", "get p:{" .. SID .. "}", "asking", "pttl p:{" .. SID .. "}" },
                  { unpack(server.calls, #server.calls - 4, #server.calls - 1) })
      assert.same({ 0, 8 }, { server.closed, server.pooled })
    end)

    it("is nil and 'redis error: ...' on any other error reply, or a second redirection", function()
      server.errors.sismember = WRONGTYPE
      assert.same({ nil, "redis error: " .. WRONGTYPE },
                  { r:membership(SID, "g1", true) })
      server.errors.sismember = "ASK 866 " .. OTHER
      assert.same({ nil, "redis error: ASK 866 " .. OTHER },
                  { r:membership(SID, "g1") })
      server.errors = { get = "NOAUTH Authentication required." }
      assert.same({ nil, "redis error: NOAUTH Authentication required." },
                  { redis.get_at(r.redis, "k") })
      assert.equal(3, server.closed)
    end)
  end)

  describe("address", function()
    it("is the configured server without sentinels", function()
      local r = redis_options { host = "10.0.0.1", port = 6380 }
      assert.same({ "10.0.0.1", 6380, r.redis.connect_options }, { r.redis:address() })
      assert.same({}, server.calls)
    end)

    describe("with sentinels", function()
      local r

      before_each(function()
        assert.is_true(redis.has_sentinel)
        r = redis_options {
          sentinels = { { host = "10.0.0.9", port = 26379 } }, master_name = "m", db = 1,
        }
        server.master = { host = "10.0.0.2", port = 6390 }
      end)

      it("is the Sentinel topology", function()
        assert.equal(require "resty.shared_session.topology.sentinel",
                     getmetatable(r.redis).__index)
      end)

      it("is the primary the sentinels name, kept 1 s by the worker", function()
        local pool = { pool = "shared_session:10.0.0.2:6390:1", pool_size = 64 }
        assert.same({ "10.0.0.2", 6390, pool }, { r.redis:address() })
        assert.same({ "set_timeout 200", "connect 10.0.0.9:26379 -", "set_timeout 500",
                      "get_master m", "set_keepalive 60000 64" }, server.calls)
        server.calls = {}
        stub.sleep(0.9)
        assert.same({ "10.0.0.2", 6390, pool }, { r.redis:address() })
        assert.same({}, server.calls)
        stub.sleep(0.2)
        server.master = { host = "10.0.0.3", port = 6391 }
        assert.equal("10.0.0.3", (r.redis:address()))
      end)

      it("is asked again as soon as the primary cannot be reached", function()
        assert.equal("10.0.0.2", (r.redis:address()))
        server.master = { host = "10.0.0.3", port = 6391 }
        server.down = "connection refused"
        assert.is_nil(r:membership(SID, "g1"))
        server.down = nil
        assert.equal("10.0.0.3", (r.redis:address()))
      end)

      it("is forgotten by forget_master", function()
        assert.equal("10.0.0.2", (r.redis:address()))
        server.master = { host = "10.0.0.3", port = 6391 }
        r.redis.forget_master()
        assert.equal("10.0.0.3", (r.redis:address()))
      end)

      it("is nil and the last sentinel's error when none names a primary", function()
        r = redis_options {
          sentinels = { { host = "10.0.0.8", port = 26379 }, { host = "10.0.0.9", port = 26380 } },
        }
        server.master = nil
        assert.same({ nil, "sentinel 10.0.0.9:26380: no master" }, { r.redis:address() })
        server.down = "timeout"
        assert.same({ nil, "sentinel 10.0.0.9:26380: timeout" }, { r.redis:address() })
        assert.same({ nil, "redis unavailable: sentinel 10.0.0.9:26380: timeout" },
                    { r:membership(SID, "g1") })
      end)
    end)
  end)
end)
