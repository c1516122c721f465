-- resty.shared_session.config: every option of configure() (README,
-- "Configuration"), its checks and defaults, and the configuration built
-- from them.
local fake_redis = require "fake_redis"

describe("resty.shared_session.config", function()
  local stub, restore, config

  -- No redis library at all: the options are checked without one.
  local NO_LIBS = {
    ["resty.redis"] = false, ["nginx.redis"] = false,
    ["resty.redis.sentinel"] = false, ["nginx.redis.sentinel"] = false,
  }

  setup(function()
    stub = require "ngx_stub"
    restore = stub.install(NO_LIBS)
    stub.shared.shared_session = stub.new_dict()
    config = require "resty.shared_session.config"
  end)

  teardown(function()
    stub.shared.shared_session = nil
    restore()
  end)

  local function config_error(opts)
    local conf, err = config.new(opts)
    assert.is_nil(conf)
    assert.is_string(err)
    return err
  end

  describe("new", function()
    it("accepts the documented options", function()
      assert.is_table(config.new {
        secret = "s", secret_fallbacks = { "old" }, salt = "flask-resty-session",
        cookie_name = "session", key_prefix = "resty_shared_session",
        redis = {
          host = "127.0.0.1", port = 6379, db = 0, password = nil,
          connect_timeout = 200, read_timeout = 500, pool_size = 64,
          keepalive_timeout = 60000,
        },
      })
      assert.is_table(config.new {})
      assert.is_table(config.new { redis = { port = "6380" } })
      assert.is_table(config.new { key_prefix = "{app}:sess.v1-x" })
    end)

    local bad = {
      { "secret", { secret = "" } },
      { "secret", { secret = 42 } },
      { "secret_fallbacks", { secret = "s", secret_fallbacks = "old" } },
      { "secret_fallbacks", { secret_fallbacks = { "old" } } },
      { "secret_fallbacks[2]", { secret = "s", secret_fallbacks = { "a", "" } } },
      { "salt", { salt = "" } },
      { "cookie_name", { cookie_name = "" } },
      { "cookie_name", { cookie_name = "my session" } },
      { "cookie_name", { cookie_name = "a;b" } },
      { "key_prefix", { key_prefix = "" } },
      { "key_prefix", { key_prefix = "has space" } },
      { "key_prefix", { key_prefix = "a*" } },
      { "key_prefix", { key_prefix = ("p"):rep(65) } },
      { "colour", { colour = "blue" } },
      { "redis", { redis = "redis://127.0.0.1" } },
      { "redis.port", { redis = { port = "abc" } } },
      { "redis.port", { redis = { port = 0 } } },
      { "redis.port", { redis = { port = 70000 } } },
      { "redis.port", { redis = { port = 63.5 } } },
      { "redis.host", { redis = { host = "" } } },
      { "redis.sentinels", { redis = { sentinels = {} } } },
      { "redis.sentinels", { redis = { sentinels = "127.0.0.1:26379" } } },
      { "redis.sentinels[1].port",
        { redis = { sentinels = { { host = "127.0.0.1", port = "x" } } } } },
      { "redis.sentinels[2].host",
        { redis = { sentinels = { { host = "a", port = 1 }, { port = 2 } } } } },
      { "redis.master_name",
        { redis = { sentinels = { { host = "a", port = 1 } }, master_name = "" } } },
      { "redis.db", { redis = { db = -1 } } },
      { "redis.password", { redis = { password = "" } } },
      { "redis.connect_timeout", { redis = { connect_timeout = 0 } } },
      { "redis.read_timeout", { redis = { read_timeout = -5 } } },
      { "redis.keepalive_timeout", { redis = { keepalive_timeout = 0 } } },
      { "redis.pool_size", { redis = { pool_size = 0 } } },
      { "redis.sentinels", { redis = { sentinels = {} } } },
      { "redis.username", { redis = { username = "", password = "p" } } },
      { "redis.username", { redis = { username = "nginx" } } },
      { "redis.socket", { redis = { socket = "redis.sock" } } },
      { "redis.socket", { redis = { socket = 6379 } } },
      { "redis.ssl", { redis = { ssl = "yes" } } },
      { "redis.ssl_verify", { redis = { ssl = true, ssl_verify = 0 } } },
      { "redis.server_name", { redis = { ssl = true, server_name = "" } } },
      { "key_layout", { key_layout = "compacted" } },
      { "key_layout", { key_layout = true } },
      { "redis.cluster", { key_layout = "cluster", redis = { cluster = {} } } },
      { "redis.cluster", { redis = { cluster = { nodes = { { host = "a", port = 1 } } } } } },
      { "redis.cluster.nodes[1].port",
        { key_layout = "cluster", redis = { cluster = { nodes = { { host = "a" } } } } } },
      { "redis.db", { key_layout = "cluster",
                      redis = { db = 1, cluster = { nodes = { { host = "a", port = 1 } } } } } },
      { "key_prefix", { key_layout = "cluster", key_prefix = "{app}" } },
      { "key_prefix", { key_layout = "compact", key_prefix = "app}" } },
    }
    for _, case in ipairs(bad) do
      local name, opts = case[1], case[2]
      it("names the option \"" .. name .. "\" when it is wrong", function()
        local err = config_error(opts)
        assert.matches('option "' .. name .. '"', err, 1, true)
      end)
    end

    it("never puts a secret in its error message", function()
      local err = config_error { secret = "top-secret-value", redis = { port = "x" } }
      assert.is_nil(err:find("top-secret-value", 1, true))
    end)

    it("rejects options that are not a table", function()
      assert.matches("must be a table", config_error("secret"))
    end)

    it("writes its messages for the caller of configure()", function()
      assert.equal('shared_session.configure: option "redis.port" must be a number',
                   config_error { redis = { port = "abc" } })
      assert.equal('shared_session.configure: option "redis.db" must be at least 0',
                   config_error { redis = { db = -1 } })
      assert.equal('shared_session.configure: option "redis.pool_size" must be an integer',
                   config_error { redis = { pool_size = 1.5 } })
      assert.equal('shared_session.configure: option "redis.tls" is unknown',
                   config_error { redis = { tls = true } })
      assert.equal("shared_session.configure: options must be a table", config_error(nil))
    end)

    it("refuses redis.sentinels without lua-resty-redis-connector", function()
      local err = config_error { redis = { sentinels = { { host = "a", port = 1 } } } }
      assert.matches('option "redis.sentinels" need lua-resty-redis-connector', err, 1, true)
    end)
  end)

  describe("the configuration", function()
    it("has the documented defaults", function()
      local conf = assert(config.new {})
      assert.is_nil(conf.keys)          -- stored mode
      assert.equal("session", conf.cookie_name)
      assert.equal("resty_shared_session", conf.key_prefix)
      assert.is_nil(conf.decision_cache)
      local r = conf.redis
      assert.equal("127.0.0.1", r.host)
      assert.equal(6379, r.port)
      assert.equal(0, r.db)
      assert.is_false(r.password)
      assert.is_false(r.sentinels)
      assert.equal("mymaster", r.master_name)
      assert.equal(200, r.connect_timeout)
      assert.equal(500, r.read_timeout)
      assert.equal(64, r.pool_size)
      assert.equal(60000, r.keepalive_timeout)
      assert.is_false(r.username)
      assert.is_false(r.socket)
      assert.is_false(r.ssl)
      assert.is_true(r.ssl_verify)
      assert.is_false(r.server_name)
      assert.equal("session", config.DEFAULT_COOKIE_NAME)
      assert.equal("resty_shared_session", config.DEFAULT_KEY_PREFIX)
    end)

    it("holds derived keys, the current secret's first, never a secret", function()
      local derive = require("resty.shared_session.cookie").derive_key
      local conf = assert(config.new {
        secret = "new", secret_fallbacks = { "old", "older" }, salt = "pepper",
      })
      assert.same({ derive("new", "pepper"), derive("old", "pepper"),
                    derive("older", "pepper") }, conf.keys)
      conf = assert(config.new { secret = "new" })
      assert.same({ derive("new", "flask-resty-session") }, conf.keys)
    end)

    it("takes numeric strings as numbers", function()
      local conf = assert(config.new { redis = { port = "6380", db = "2" } })
      assert.equal(6380, conf.redis.port)
      assert.equal(2, conf.redis.db)
    end)

    it("names one connection pool per server and database", function()
      local conf = assert(config.new { redis = { host = "10.0.0.1", port = 6380, db = 3,
                                                 pool_size = 8 } })
      assert.same({ pool = "shared_session:10.0.0.1:6380:3", pool_size = 8 },
                  conf.redis.connect_options)
    end)

    it("gives TLS and each ACL user their own pool, and a Unix socket no port", function()
      local conf = assert(config.new { redis = { host = "10.0.0.1", ssl = true,
                                                 username = "nginx", password = "p" } })
      assert.equal("shared_session:10.0.0.1:6379:0:tls:nginx",
                   conf.redis.connect_options.pool)
      assert.is_false(conf.redis.server_name)     -- an address: no SNI
      conf = assert(config.new { redis = { socket = "/run/redis/redis.sock" } })
      assert.equal("unix:/run/redis/redis.sock", conf.redis.host)
      assert.is_false(conf.redis.port)
      assert.equal("shared_session:unix:/run/redis/redis.sock:false:0",
                   conf.redis.connect_options.pool)
    end)

    local function layout(name)
      return require("resty.shared_session.layout." .. name)
    end
    local function topology(name)
      return require("resty.shared_session.topology." .. name)
    end

    it("takes a cluster with the cluster layout", function()
      local conf = assert(config.new {
        key_layout = "cluster",
        redis = { cluster = { nodes = { { host = "127.0.0.1", port = "7000" } } } },
      })
      assert.equal(7000, conf.redis.cluster.nodes[1].port)
      assert.equal(layout("cluster").mt, getmetatable(conf.keyspace))
      assert.equal(topology("cluster"), getmetatable(conf.redis).__index)
      assert.is_true(conf.keyspace.CONTROLS_ONLY_RISE)
      local default = assert(config.new {})
      assert.equal(layout("v1").mt, getmetatable(default.keyspace))
      assert.equal(topology("single"), getmetatable(default.redis).__index)
      assert.is_false(default.keyspace.CONTROLS_ONLY_RISE)
      assert.equal(default.redis, default.keyspace.redis)
      assert.equal("resty_shared_session", default.keyspace.prefix)
    end)

    it("takes sentinels as the Sentinel topology, which needs its library", function()
      -- (No resty.redis.sentinel here; redis_spec has it.)
      local _, err = config.new {
        redis = { sentinels = { { host = "127.0.0.1", port = 26379 } } },
      }
      assert.matches("need lua-resty-redis-connector", err, 1, true)
    end)

    it("takes the compact layout (section 15), on one Redis and on a cluster", function()
      local conf = assert(config.new { key_layout = "compact", key_prefix = "app" })
      assert.equal(layout("compact").mt, getmetatable(conf.keyspace))
      -- Section 13 as on the cluster layout (section 14.1's index step).
      assert.is_true(conf.keyspace.CONTROLS_ONLY_RISE)
      assert.equal(topology("single"), getmetatable(conf.redis).__index)
      conf = assert(config.new {
        key_layout = "compact",
        redis = { cluster = { nodes = { { host = "127.0.0.1", port = 7000 } } } },
      })
      assert.equal(layout("compact").mt, getmetatable(conf.keyspace))
      assert.equal(topology("cluster"), getmetatable(conf.redis).__index)
      assert.equal(7000, conf.redis.cluster.nodes[1].port)
    end)

    it("lists the three layouts when key_layout is wrong", function()
      assert.matches('option "key_layout" must be "v1", "cluster" or "compact"',
                     config_error { key_layout = "v2" }, 1, true)
      assert.matches('needs key_layout = "cluster" or "compact"', config_error {
        redis = { cluster = { nodes = { { host = "a", port = 1 } } } },
      }, 1, true)
      assert.matches('must hold no { or } with key_layout "compact"',
                     config_error { key_layout = "compact", key_prefix = "{app}" }, 1, true)
    end)

    it("verifies TLS against the host's name unless told another", function()
      local conf = assert(config.new { redis = { host = "redis.internal", ssl = true } })
      assert.equal("redis.internal", conf.redis.server_name)
      assert.is_true(conf.redis.ssl_verify)
      conf = assert(config.new { redis = { host = "10.0.0.1", ssl = true,
                                           server_name = "cache.example" } })
      assert.equal("cache.example", conf.redis.server_name)
    end)

    it("refuses a Unix socket with sentinels", function()
      local restore_libs = stub.install {
        ["resty.redis"] = fake_redis.server().lib,
        ["resty.redis.sentinel"] = fake_redis.server().sentinel_lib,
      }
      local with_lib = require "resty.shared_session.config"
      local _, err = with_lib.new {
        redis = { socket = "/run/r.sock", sentinels = { { host = "a", port = 1 } } },
      }
      restore_libs()
      assert.matches('option "redis.socket"', err, 1, true)
    end)

    it("keeps the sentinels when the library is there", function()
      local restore_libs = stub.install {
        ["resty.redis"] = fake_redis.server().lib,
        ["resty.redis.sentinel"] = fake_redis.server().sentinel_lib,
      }
      local with_lib = require "resty.shared_session.config"
      local conf, err = with_lib.new {
        redis = { sentinels = { { host = "10.0.0.1", port = "26379" } }, master_name = "m" },
      }
      restore_libs()    -- (`config`, loaded without the library, stays as it was)
      assert.is_nil(err)
      assert.same({ { host = "10.0.0.1", port = 26379 } }, conf.redis.sentinels)
      assert.equal("m", conf.redis.master_name)
    end)
  end)

  describe("decision_cache", function()
    it("accepts a declared dict and a ttl from 0.001 to 10 s", function()
      for _, ttl in ipairs { 0.001, 0.5, 1, 10, "2" } do
        assert.is_table(config.new {
          decision_cache = { dict = "shared_session", ttl = ttl },
        })
      end
      assert.is_table(config.new {
        decision_cache = { dict = "shared_session" },
      })
    end)

    local bad = {
      { "decision_cache", { decision_cache = "shared_session" } },
      { "decision_cache.dict", { decision_cache = {} } },
      { "decision_cache.dict", { decision_cache = { dict = "" } } },
      { "decision_cache.dict", { decision_cache = { dict = 7 } } },
      { "decision_cache.dict", { decision_cache = { dict = "undeclared" } } },
      { "decision_cache.ttl", { decision_cache = { dict = "shared_session", ttl = 0 } } },
      { "decision_cache.ttl", { decision_cache = { dict = "shared_session", ttl = -1 } } },
      { "decision_cache.ttl", { decision_cache = { dict = "shared_session", ttl = 10.5 } } },
      { "decision_cache.ttl", { decision_cache = { dict = "shared_session", ttl = 0.0001 } } },
      { "decision_cache.ttl", { decision_cache = { dict = "shared_session", ttl = "soon" } } },
      { "decision_cache.ttl", { decision_cache = { dict = "shared_session", ttl = 0 / 0 } } },
      { "decision_cache.size", { decision_cache = { dict = "shared_session", size = 1 } } },
      { "decision_cache.ttl", { decision_cache = { dict = "shared_session", ttl = 300 } } },
      { "decision_cache.ttl", { decision_cache = { dict = "shared_session", ttl = 86401,
                                                   all_writers_publish = true } } },
      { "decision_cache.all_writers_publish",
        { decision_cache = { dict = "shared_session", all_writers_publish = "yes" } } },
      { "decision_cache.worker_entries",
        { decision_cache = { dict = "shared_session", worker_entries = -1 } } },
      { "decision_cache.worker_entries",
        { decision_cache = { dict = "shared_session", worker_entries = 1.5 } } },
      { "decision_cache.worker_entries",
        { decision_cache = { dict = "shared_session", worker_entries = "many" } } },
    }
    for _, case in ipairs(bad) do
      local name, opts = case[1], case[2]
      it("names the option \"" .. name .. "\" when it is wrong", function()
        assert.matches('option "' .. name .. '"', config_error(opts), 1, true)
      end)
    end

    it("says how long a ttl may be when every writer publishes", function()
      local err = config_error { decision_cache = { dict = "shared_session", ttl = 60 } }
      assert.matches("up to 86400 with all_writers_publish = true", err, 1, true)
    end)

    it("keeps decisions 1 s by default, 300 s when every writer publishes, up to a day", function()
      local function dc(opts)
        opts.dict = "shared_session"
        return assert(config.new { decision_cache = opts }).decision_cache
      end
      assert.equal(1, dc({}).ttl)
      assert.is_false(dc({}).all_writers_publish)
      assert.equal(300, dc({ all_writers_publish = true }).ttl)
      assert.is_true(dc({ all_writers_publish = true }).all_writers_publish)
      assert.equal(86400, dc({ all_writers_publish = true, ttl = 86400 }).ttl)
      assert.equal(2, dc({ all_writers_publish = false, ttl = 2 }).ttl)
    end)

    it("gives each worker a level of its own unless worker_entries is 0", function()
      local dc = assert(config.new {
        decision_cache = { dict = "shared_session", worker_entries = 3 },
      }).decision_cache
      assert.equal(3, dc.worker:capacity())
      assert.is_nil(assert(config.new {
        decision_cache = { dict = "shared_session", worker_entries = 0 },
      }).decision_cache.worker)
      assert.equal(20000, assert(config.new {
        decision_cache = { dict = "shared_session" },
      }).decision_cache.worker:capacity())
    end)

    it("says which dict it did not find", function()
      local err = config_error { decision_cache = { dict = "undeclared" } }
      assert.matches('none is called "undeclared"', err, 1, true)
    end)

    it("holds the dict, the ttl, the channel and the subscriber's own pool", function()
      local conf = assert(config.new {
        key_prefix = "app", redis = { host = "10.0.0.1", port = 6380, db = 2 },
        decision_cache = { dict = "shared_session", ttl = "0.5" },
      })
      local dc = conf.decision_cache
      assert.equal(stub.shared.shared_session, dc.dict)
      assert.equal("shared_session", dc.dict_name)
      assert.equal(0.5, dc.ttl)
      assert.equal("app:invalidate", dc.channel)
      assert.same({ pool = "shared_session:subscriber:10.0.0.1:6380" },
                  dc.subscriber_connect_options)
      assert.equal(1, assert(config.new {
        decision_cache = { dict = "shared_session" },
      }).decision_cache.ttl)
    end)

    it("gives every configuration its own id", function()
      local seen = {}
      for _ = 1, 3 do
        local id = assert(config.new {
          decision_cache = { dict = "shared_session" },
        }).decision_cache.config_id
        assert.is_nil(seen[id])
        seen[id] = true
      end
    end)
  end)
end)
