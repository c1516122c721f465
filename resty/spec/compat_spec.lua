-- resty.shared_session.compat: the 0.1.x session API, with a local secret
-- against every vector of the protocol, and in stored mode against
-- fake_redis.
local fake_redis = require "fake_redis"
local vectors = require "vectors"

local SID = "3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f"
local SIG = "FsOYDgVKMWoijVTT8uWUy_hCy44"

describe("resty.shared_session.compat", function()
  local stub, restore, config, compat
  local mt

  setup(function()
    stub = require "ngx_stub"
    restore = stub.install()
    config = require "resty.shared_session.config"
    compat = require "resty.shared_session.compat"
    mt = { __index = compat }
  end)

  teardown(function()
    restore()
  end)

  after_each(function()
    stub.var.http_cookie = nil
  end)

  local function configure(opts)
    return assert(config.new(opts))
  end

  describe("verify_signature with a local secret", function()
    local function session_for(cookie)
      stub.var.http_cookie = "session=" .. cookie
      return assert(compat.new(nil, mt, nil, "session", "p"))
    end

    for _, v in ipairs(vectors.valid) do
      it("accepts the valid vector for sid " .. v.sid, function()
        local conf = configure { secret = v.secret, salt = v.salt }
        assert.is_true(session_for(v.cookie):verify_signature(conf))
      end)
    end

    for i, v in ipairs(vectors.rotation) do
      it("rotation vector " .. i .. ": " .. v.note, function()
        local secrets = v.secrets
        local fallbacks = {}
        for j = 1, #secrets - 1 do
          fallbacks[j] = secrets[j]
        end
        local conf = configure {
          secret = secrets[#secrets], secret_fallbacks = fallbacks, salt = v.salt,
        }
        local ok = session_for(v.cookie or v.expected_cookie):verify_signature(conf)
        assert.equal(v.valid ~= false, ok == true)
      end)
    end

    for _, case in ipairs(vectors.invalid.cases) do
      it("rejects: " .. case.why, function()
        local conf = configure {
          secret = vectors.invalid.secret, salt = vectors.invalid.salt,
        }
        local ok, err = session_for(case.cookie):verify_signature(conf)
        assert.is_nil(ok)
        assert.is_string(err)
      end)
    end

    it("returns nil and an error when there is no cookie", function()
      local session, err = compat.new(nil, mt, nil, "session", "p")
      assert.is_nil(session)
      assert.equal("no session cookie", err)
    end)

    it("needs no redis connection", function()
      local v = vectors.valid[1]
      local conf = configure { secret = v.secret, salt = v.salt }
      assert.is_true(session_for(v.cookie):verify_signature(conf))
      assert.same({ nil, "bad signature" },
                  { session_for(v.sid .. "." .. ("A"):rep(27)):verify_signature(conf) })
    end)
  end)

  describe("new", function()
    it("reads the cookie and prefix given, else the configured ones, else the defaults", function()
      stub.var.http_cookie = "session=" .. SID .. "." .. SIG .. "; sid=" .. SID .. "." .. SIG
      local session = assert(compat.new(nil, mt, "conn"))
      assert.equal("resty_shared_session", session.key_prefix)
      session = assert(compat.new(configure { cookie_name = "sid", key_prefix = "app" }, mt))
      assert.equal("app", session.key_prefix)
      session = assert(compat.new(configure { cookie_name = "none" }, mt, nil, "sid", "x"))
      assert.equal("x", session.key_prefix)
      assert.is_nil(compat.new(configure { cookie_name = "none" }, mt))
    end)

    it("keeps the 0.1.x fields", function()
      stub.var.http_cookie = "session=" .. SID .. "." .. SIG
      local session = assert(compat.new(nil, mt, "conn", "session", "p"))
      -- And the key layout that reads them (v1 without configure()).
      assert.equal("p:groups:" .. SID, session.keyspace:groups_key(SID))
      session.keyspace = nil
      assert.same({ redis_conn = "conn", key_prefix = "p", cookie = SID .. "." .. SIG,
                    sid = SID, signature = SIG }, setmetatable(session, nil))
    end)

    it("gives a session whose methods fail for a malformed cookie", function()
      stub.var.http_cookie = "session=not a session cookie"
      local session = assert(compat.new(nil, mt, fake_redis.server().lib.new(), "session"))
      local why = "malformed cookie: invalid character in cookie"
      assert.same({ nil, why }, { session:verify_signature(nil) })
      assert.same({ nil, why }, { session:verify_signature(configure { secret = "s" }) })
      assert.same({ nil, why }, { session:is_group_member("g1") })
      assert.same({ nil, why }, { session:list_groups() })
      assert.same({ nil, why }, { session:get_sid() })
      assert.same({ nil, why }, { session:get_data() })
      assert.equal("not a session cookie", session:get_cookie_raw())
      assert.is_nil(session:get_cookie_signature())
    end)

    it("reads the Cookie header by the protocol's grammar, and refuses what it refuses", function()
      stub.var.http_cookie = "a=1;\tsession = " .. SID .. "." .. SIG .. "\t; SESSION=x"
      assert.equal(SID, assert(compat.new(nil, mt, nil, "session")).sid)
      stub.var.http_cookie = "session=" .. SID .. "." .. SIG .. "; session=other"
      local session = assert(compat.new(nil, mt, fake_redis.server().lib.new(), "session"))
      local why = "malformed cookie: cookies of that name with different values"
      assert.same({ nil, why }, { session:verify_signature(configure { secret = "s" }) })
      assert.same({ nil, why }, { session:is_group_member("g1") })
      assert.is_nil(session:get_cookie_raw())
      stub.var.http_cookie = "Session=" .. SID .. "." .. SIG
      assert.same({ nil, "no session cookie" }, { compat.new(nil, mt, nil, "session") })
    end)
  end)

  describe("with Redis", function()
    local server, session

    before_each(function()
      server = fake_redis.server()
      stub.var.http_cookie = "session=" .. SID .. "." .. SIG
      session = assert(compat.new(nil, mt, server.lib.new(), "session", "p"))
    end)

    describe("verify_signature (stored mode)", function()
      it("is true when the stored signature is the cookie's", function()
        server.strings["p:signature:" .. SID] = SIG
        assert.is_true(session:verify_signature(nil))
        assert.is_true(session:verify_signature(configure {}))
        assert.same({ "get p:signature:" .. SID, "get p:signature:" .. SID }, server.calls)
      end)

      it("says why it is not", function()
        assert.same({ nil, "no stored signature" }, { session:verify_signature() })
        server.strings["p:signature:" .. SID] = SIG:sub(1, 26) .. "5"
        assert.same({ nil, "bad signature" }, { session:verify_signature() })
        server.strings["p:signature:" .. SID] = SIG .. "x"
        assert.same({ nil, "bad signature" }, { session:verify_signature() })
        server.errors.get = "ERR boom"
        assert.same({ nil, "redis error: ERR boom" }, { session:verify_signature() })
      end)

      it("needs a redis connection", function()
        session.redis_conn = nil
        assert.same({ nil, "no redis connection" }, { session:verify_signature() })
      end)
    end)

    describe("is_group_member", function()
      it("is true for a member, nil and 'not a member' otherwise", function()
        server.sets["p:groups:" .. SID] = { g1 = true, ["7"] = true }
        assert.is_true(session:is_group_member("g1"))
        assert.is_true(session:is_group_member(7))
        assert.same({ nil, "not a member" }, { session:is_group_member("g2") })
        assert.same({ "sismember p:groups:" .. SID .. " g1" }, { server.calls[1] })
      end)

      it("needs a group id and Redis", function()
        assert.same({ nil, "group id must be a string" }, { session:is_group_member(nil) })
        assert.same({ nil, "group id must be a string" }, { session:is_group_member({}) })
        server.errors.sismember = "ERR boom"
        assert.same({ nil, "redis error: ERR boom" }, { session:is_group_member("g1") })
        session.redis_conn = nil
        assert.same({ nil, "no redis connection" }, { session:is_group_member("g1") })
      end)
    end)

    describe("list_groups", function()
      it("lists the session's groups, none when it has none", function()
        server.sets["p:groups:" .. SID] = { g1 = true, g2 = true }
        assert.same({ "g1", "g2" }, session:list_groups())
        server.sets["p:groups:" .. SID] = nil
        assert.same({}, session:list_groups())
        server.errors.smembers = "ERR boom"
        assert.same({ nil, "redis error: ERR boom" }, { session:list_groups() })
      end)
    end)

    describe("get_sid, get_cookie_signature, get_cookie_raw", function()
      it("give the parts of the cookie", function()
        assert.equal(SID, session:get_sid())
        assert.equal(SIG, session:get_cookie_signature())
        assert.equal(SID .. "." .. SIG, session:get_cookie_raw())
        assert.same({}, server.calls)
      end)
    end)

    describe("get_data", function()
      it("decodes the session's JSON object", function()
        server.strings["p:data:" .. SID] = '{"username":"ada","groups":["g1"],"x":null}'
        local data = session:get_data()
        assert.equal("ada", data.username)
        assert.same({ "g1" }, data.groups)
        assert.equal(require("cjson").null, data.x)
      end)

      it("treats data that is not a JSON object as empty, and logs it", function()
        for _, raw in ipairs { "[1,2]", '"text"', "{not json", "42", "" } do
          server.strings["p:data:" .. SID] = raw
          local logged = #stub.logs
          assert.same({}, session:get_data())
          assert.same({ stub.WARN .. " shared_session: session data is not a JSON object,"
                        .. " treated as empty (session -)" }, stub.log_lines(logged))
        end
      end)

      it("is nil and an error when the session is gone or Redis fails", function()
        assert.same({ nil, "no session data" }, { session:get_data() })
        server.errors.get = "ERR boom"
        assert.same({ nil, "redis error: ERR boom" }, { session:get_data() })
      end)
    end)
  end)

  describe("with Redis, on the compact layout (PROTOCOL.md section 15)", function()
    local server, session, conf
    local KEY = "p:{" .. SID .. "}"

    before_each(function()
      server = fake_redis.server()
      stub.var.http_cookie = "session=" .. SID .. "." .. SIG
      conf = configure { key_layout = "compact" }
      session = assert(compat.new(conf, mt, server.lib.new(), "session", "p"))
      server.strings[KEY] = SIG .. '{"username":"ada","groups":["g2","g1",3]}'
    end)

    it("reads every answer from the session's one key", function()
      assert.is_true(session:verify_signature(conf))
      assert.is_true(session:is_group_member("g1"))
      assert.same({ nil, "not a member" }, { session:is_group_member("g3") })
      assert.same({ nil, "not a member" }, { session:is_group_member(3) })
      assert.same({ "g1", "g2" }, session:list_groups())
      assert.equal("ada", session:get_data().username)
      for _, call in ipairs(server.calls) do
        assert.equal("get " .. KEY, call)
      end
      assert.equal(6, #server.calls)
    end)

    it("compares the value's signature (stored mode)", function()
      server.strings[KEY] = SIG:sub(1, 26) .. "5" .. '{"groups":["g1"]}'
      assert.same({ nil, "bad signature" }, { session:verify_signature(conf) })
    end)

    it("finds no session in an absent or malformed value", function()
      for _, value in ipairs { false, SIG .. "[]", "x" .. SIG .. "{}", SIG .. "{" } do
        server.strings[KEY] = value or nil
        assert.same({ nil, "no stored signature" }, { session:verify_signature(conf) })
        assert.same({ nil, "not a member" }, { session:is_group_member("g1") })
        assert.same({}, session:list_groups())
        assert.same({ nil, "no session data" }, { session:get_data() })
      end
    end)

    it("is nil and 'redis error: ...' when Redis fails", function()
      server.errors.get = "ERR boom"
      assert.same({ nil, "redis error: ERR boom" }, { session:verify_signature(conf) })
      assert.same({ nil, "redis error: ERR boom" }, { session:is_group_member("g1") })
      assert.same({ nil, "redis error: ERR boom" }, { session:list_groups() })
      assert.same({ nil, "redis error: ERR boom" }, { session:get_data() })
    end)
  end)

  -- Before the layouts were objects, the 0.1.x API read the v1 names here
  -- and so refused every session on the cluster layout.
  describe("with Redis, on the cluster layout (PROTOCOL.md section 14)", function()
    local server, session, conf
    local TAG = "p:{" .. SID .. "}:"

    before_each(function()
      server = fake_redis.server()
      stub.var.http_cookie = "session=" .. SID .. "." .. SIG
      conf = configure { key_layout = "cluster" }
      session = assert(compat.new(conf, mt, server.lib.new(), "session", "p"))
      server.strings[TAG .. "signature"] = SIG
      server.sets[TAG .. "groups"] = { g1 = true, g2 = true }
      server.strings[TAG .. "data"] = '{"username":"ada"}'
      -- The v1 names of the same session: never read on this layout.
      server.strings["p:signature:" .. SID] = "x"
      server.sets["p:groups:" .. SID] = { g9 = true }
    end)

    it("reads the session's keys under its hash tag", function()
      assert.is_true(session:verify_signature(conf))
      assert.is_true(session:is_group_member("g1"))
      assert.same({ nil, "not a member" }, { session:is_group_member("g9") })
      assert.same({ "g1", "g2" }, session:list_groups())
      assert.equal("ada", session:get_data().username)
      assert.same({
        "get " .. TAG .. "signature", "sismember " .. TAG .. "groups g1",
        "sismember " .. TAG .. "groups g9", "smembers " .. TAG .. "groups",
        "get " .. TAG .. "data",
      }, server.calls)
    end)

    it("finds no session when its keys are gone", function()
      server.strings = {}
      server.sets = {}
      assert.same({ nil, "no stored signature" }, { session:verify_signature(conf) })
      assert.same({ nil, "not a member" }, { session:is_group_member("g1") })
      assert.same({}, session:list_groups())
      assert.same({ nil, "no session data" }, { session:get_data() })
    end)
  end)
end)
