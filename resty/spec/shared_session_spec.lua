-- Pure logic of resty.shared_session, outside nginx: cookie parsing, the
-- constant-time comparison, option checks, and the local signature check of
-- the 0.1.x API against every vector of the protocol.
local cjson = require "cjson"

-- The shared folder beside the repository holds the authoritative vectors;
-- a clone without it uses the repository's copy (kept identical by a test).
local function read_vectors()
  local f = io.open("../../shared/protocol/vectors.json", "rb")
    or assert(io.open("../protocol/vectors.json", "rb"))
  local text = f:read("*a")
  f:close()
  return cjson.decode(text)
end

local vectors = read_vectors()

describe("resty.shared_session (pure logic)", function()
  local stub, shared_session, saved_ngx

  setup(function()
    saved_ngx = rawget(_G, "ngx")
    stub = require "ngx_stub"
    rawset(_G, "ngx", stub)
    package.loaded["resty.shared_session"] = nil
    shared_session = require "resty.shared_session"
  end)

  teardown(function()
    package.loaded["resty.shared_session"] = nil
    rawset(_G, "ngx", saved_ngx)
  end)

  describe("parse_cookie", function()
    for _, v in ipairs(vectors.valid) do
      it("splits the valid cookie for sid " .. v.sid, function()
        local sid, sig = shared_session.parse_cookie(v.cookie)
        assert.equal(v.sid, sid)
        assert.equal(v.signature, sig)
      end)
    end

    -- Cases that fail on format alone; the others are well-formed forgeries.
    local well_formed = {
      ["one signature character changed"] = true,
      ["session id changed (upper case)"] = true,
      ["signed with another salt"] = true,
      ["signed with another secret"] = true,
    }
    for _, case in ipairs(vectors.invalid.cases) do
      if not well_formed[case.why] then
        it("rejects: " .. case.why, function()
          local sid, err = shared_session.parse_cookie(case.cookie)
          assert.is_nil(sid)
          assert.is_string(err)
        end)
      end
    end

    it("checks the 256-byte cap before anything else", function()
      local sid, err = shared_session.parse_cookie(("a"):rep(257))
      assert.is_nil(sid)
      assert.matches("256", err)
    end)

    it("accepts a cookie of exactly 256 bytes", function()
      local cookie = ("a"):rep(128) .. "." .. ("b"):rep(27)
      assert.equal(156, #cookie)
      assert.is_string((shared_session.parse_cookie(cookie)))
    end)

    it("bounds the session id to 16..128 characters", function()
      local sig = ("s"):rep(27)
      assert.is_nil((shared_session.parse_cookie(("a"):rep(15) .. "." .. sig)))
      assert.is_string((shared_session.parse_cookie(("a"):rep(16) .. "." .. sig)))
      assert.is_string((shared_session.parse_cookie(("a"):rep(128) .. "." .. sig)))
      assert.is_nil((shared_session.parse_cookie(("a"):rep(129) .. "." .. sig)))
    end)

    it("rejects characters outside [A-Za-z0-9_-] in the session id", function()
      local sig = ("s"):rep(27)
      for _, c in ipairs { " ", "+", "/", "=", ":", "\0", "\255", "%" } do
        local sid = ("a"):rep(10) .. c .. ("a"):rep(10)
        assert.is_nil((shared_session.parse_cookie(sid .. "." .. sig)), c)
      end
    end)

    it("rejects a non-string", function()
      assert.is_nil((shared_session.parse_cookie(nil)))
      assert.is_nil((shared_session.parse_cookie(42)))
    end)
  end)

  describe("equals_constant_time", function()
    local eq

    setup(function()
      eq = shared_session.equals_constant_time
    end)

    it("is true only for equal strings", function()
      assert.is_true(eq("FsOYDgVKMWoijVTT8uWUy_hCy44", "FsOYDgVKMWoijVTT8uWUy_hCy44"))
      assert.is_false(eq("FsOYDgVKMWoijVTT8uWUy_hCy44", "FsOYDgVKMWoijVTT8uWUy_hCy45"))
      assert.is_false(eq("GsOYDgVKMWoijVTT8uWUy_hCy44", "FsOYDgVKMWoijVTT8uWUy_hCy44"))
      assert.is_true(eq("", ""))
    end)

    it("is false when the lengths differ, either way", function()
      assert.is_false(eq("abc", "abcd"))
      assert.is_false(eq("abcd", "abc"))
      assert.is_false(eq("", "a"))
      assert.is_false(eq("a", ""))
    end)
  end)

  describe("configure", function()
    local function configure_error(opts)
      local ok, err = pcall(shared_session.configure, opts)
      assert.is_false(ok)
      return err
    end

    it("accepts the documented options", function()
      assert.is_true(shared_session.configure {
        secret = "s", secret_fallbacks = { "old" }, salt = "flask-resty-session",
        cookie_name = "session", key_prefix = "resty_shared_session",
        redis = {
          host = "127.0.0.1", port = 6379, db = 0, password = nil,
          connect_timeout = 200, read_timeout = 500, pool_size = 64,
          keepalive_timeout = 60000,
        },
      })
      assert.is_true(shared_session.configure {})
      assert.is_true(shared_session.configure { redis = { port = "6380" } })
      assert.is_true(shared_session.configure { key_prefix = "{app}:sess.v1-x" })
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
    }
    for _, case in ipairs(bad) do
      local name, opts = case[1], case[2]
      it("names the option \"" .. name .. "\" when it is wrong", function()
        local err = configure_error(opts)
        assert.matches('option "' .. name .. '"', err, 1, true)
      end)
    end

    it("never puts a secret in its error message", function()
      local err = configure_error { secret = "top-secret-value", redis = { port = "x" } }
      assert.is_nil(err:find("top-secret-value", 1, true))
    end)

    it("rejects options that are not a table", function()
      assert.matches("must be a table", configure_error("secret"))
    end)
  end)

  describe("verify_signature with a local secret (0.1.x API)", function()
    local function session_for(cookie)
      stub.var.cookie_session = cookie
      return assert(shared_session:new(nil, "session", "p"))
    end

    after_each(function()
      stub.var.cookie_session = nil
    end)

    for _, v in ipairs(vectors.valid) do
      it("accepts the valid vector for sid " .. v.sid, function()
        shared_session.configure { secret = v.secret, salt = v.salt }
        assert.is_true(session_for(v.cookie):verify_signature())
      end)
    end

    for i, v in ipairs(vectors.rotation) do
      it("rotation vector " .. i .. ": " .. v.note, function()
        local secrets = v.secrets
        local fallbacks = {}
        for j = 1, #secrets - 1 do
          fallbacks[j] = secrets[j]
        end
        shared_session.configure {
          secret = secrets[#secrets], secret_fallbacks = fallbacks, salt = v.salt,
        }
        local ok = session_for(v.cookie or v.expected_cookie):verify_signature()
        assert.equal(v.valid ~= false, ok == true)
      end)
    end

    for _, case in ipairs(vectors.invalid.cases) do
      it("rejects: " .. case.why, function()
        shared_session.configure {
          secret = vectors.invalid.secret, salt = vectors.invalid.salt,
        }
        local ok, err = session_for(case.cookie):verify_signature()
        assert.is_nil(ok)
        assert.is_string(err)
      end)
    end

    it("returns nil and an error when there is no cookie", function()
      local session, err = shared_session:new(nil, "session", "p")
      assert.is_nil(session)
      assert.equal("no session cookie", err)
    end)
  end)
end)
