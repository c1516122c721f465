-- resty.shared_session, the public face: every documented name, configure(),
-- and authorize()/access() (PROTOCOL.md section 5) with the decision cache,
-- against fake_redis and the stub's dict. The modules behind it have their
-- own specs; real nginx and Redis are under t/.
local fake_redis = require "fake_redis"
local vectors = require "vectors"

local V = vectors.valid[1]
local SID, SIG, COOKIE = V.sid, V.signature, V.cookie
local FORGED = SID .. "." .. ("A"):rep(27)

-- PROTOCOL.md 16.1: what a log line says of SID (its event id under the
-- secret; resty/spec/log_spec.lua checks event_id against events.json).
local function event_id_of(sid, secret)
  local log = require "resty.shared_session.log"
  return log.event_id(assert(log.event_id_key(secret)), sid)
end
local EVENT_ID = event_id_of(SID, V.secret)

describe("resty.shared_session", function()
  local stub, restore, server, shared_session

  setup(function()
    stub = require "ngx_stub"
  end)

  -- A fresh module for every test (configure() was never called), with a
  -- fresh fake Redis holding the session of V in group g1, and no cookie.
  before_each(function()
    server = fake_redis.server()
    restore = stub.install {
      ["resty.redis"] = server.lib, ["nginx.redis"] = false,
      ["resty.redis.sentinel"] = false, ["nginx.redis.sentinel"] = false,
    }
    stub.shared.shared_session = stub.new_dict()
    shared_session = require "resty.shared_session"
    server.sets["p:groups:" .. SID] = { g1 = true }
    server.strings["p:signature:" .. SID] = SIG
  end)

  after_each(function()
    stub.var.http_cookie = nil
    stub.shared.shared_session = nil
    restore()
  end)

  local function configure(opts)
    opts.key_prefix = opts.key_prefix or "p"
    return shared_session.configure(opts)
  end

  local function sismembers()
    local n = 0
    for _, call in ipairs(server.calls) do
      if call:find("^sismember") then
        n = n + 1
      end
    end
    return n
  end

  describe("exports", function()
    it("every documented name, and nothing for tests", function()
      for _, name in ipairs {
        "configure", "authorize", "access", "check", "start_subscriber", "new", "parse_cookie",
        "equals_constant_time", "verify_signature", "is_group_member", "list_groups",
        "get_sid", "get_data", "get_cookie_sid", "list_allowed_groups",
        "get_cookie_signature", "get_cookie_raw",
      } do
        assert.is_function(shared_session[name], name)
      end
      assert.equal("0.1.0", shared_session._VERSION)
      for name in pairs(shared_session) do
        assert.is_true(name == "_VERSION" or name:sub(1, 1) ~= "_", name)
      end
    end)

    it("the modules' functions under their documented names", function()
      local cookie = require "resty.shared_session.cookie"
      local compat = require "resty.shared_session.compat"
      assert.equal(cookie.parse, shared_session.parse_cookie)
      assert.equal(cookie.equals_constant_time, shared_session.equals_constant_time)
      assert.equal(compat.is_group_member, shared_session.is_group_member)
      assert.equal(compat.list_groups, shared_session.list_groups)
      assert.equal(compat.list_groups, shared_session.list_allowed_groups)
      assert.equal(compat.get_sid, shared_session.get_sid)
      assert.equal(compat.get_sid, shared_session.get_cookie_sid)
      assert.equal(compat.get_data, shared_session.get_data)
      assert.equal(compat.get_cookie_signature, shared_session.get_cookie_signature)
      assert.equal(compat.get_cookie_raw, shared_session.get_cookie_raw)
    end)
  end)

  describe("configure", function()
    it("returns true for good options", function()
      assert.is_true(shared_session.configure {})
      assert.is_true(shared_session.configure { secret = "s", redis = { port = "6380" } })
    end)

    it("raises the error that names the option, without a position", function()
      local config = require "resty.shared_session.config"
      for _, opts in ipairs {
        { redis = { port = "abc" } }, { colour = "blue" }, { secret = "" }, "secret",
      } do
        local ok, err = pcall(shared_session.configure, opts)
        assert.is_false(ok)
        assert.equal(select(2, config.new(opts)), err)
        assert.matches("^shared_session%.configure: ", err)
      end
    end)

    it("leaves the previous configuration in force when it fails", function()
      assert.is_true(configure { secret = V.secret, salt = V.salt })
      assert.is_false(pcall(shared_session.configure, { secret = V.secret, salt = "" }))
      stub.var.http_cookie = "session=" .. COOKIE
      assert.equal(200, shared_session.authorize("g1"))
    end)
  end)

  describe("authorize", function()
    local function refusal(status, level, line, ...)
      local logged = #stub.logs
      assert.same({ status, (line:match("^(.*) %(session ")) }, { shared_session.authorize(...) })
      assert.same({ level .. " shared_session: " .. status .. " " .. line },
                  stub.log_lines(logged))
    end

    it("is 503 before configure()", function()
      stub.var.http_cookie = "session=" .. COOKIE
      refusal(503, stub.ERR, "configure() was not called (session -, group nil)", "g1")
      assert.same({}, server.calls)
    end)

    describe("with a local secret", function()
      before_each(function()
        configure { secret = V.secret, salt = V.salt }
      end)

      it("is 200 for a member, after SISMEMBER and GET not-before in one round trip", function()
        stub.var.http_cookie = "session=" .. COOKIE
        assert.same({ 200 }, { shared_session.authorize("g1") })
        assert.equal(1, sismembers())
        assert.same({ "send", "sismember p:groups:" .. SID .. " g1", "get p:not-before",
                      "pttl p:groups:" .. SID, "set_keepalive 60000 64" },
                    { unpack(server.calls, 4, 8) })
      end)

      it("takes a table: the group's variable, or the group itself", function()
        stub.var.http_cookie = "session=" .. COOKIE
        stub.var.group_id = "g1"
        assert.same({ 200 }, { shared_session.authorize{ group_var = "group_id" } })
        assert.same({ 200 }, { shared_session.authorize{ group = "g1" } })
        stub.var.group_id = "g2"
        refusal(403, stub.INFO, "not a member of the group (session " .. EVENT_ID .. ", group g2)",
                { group_var = "group_id" })
        stub.var.group_id = nil
        refusal(403, stub.WARN, "no group id given (session -, group nil)",
                { group_var = "group_id" })
        refusal(503, stub.ERR, "group_var must be a variable's name (session -, group nil)",
                { group_var = 42 })
        refusal(503, stub.ERR, "group_var must be a variable's name (session -, group nil)",
                { group_var = "" })
        assert.equal(3, sismembers())
      end)

      it("is 401 without a cookie, 403 for a malformed or forged one, without Redis", function()
        refusal(401, stub.INFO, "no session cookie (session -, group g1)", "g1")
        stub.var.http_cookie = "session=" .. "not-a-cookie"
        refusal(403, stub.WARN, "malformed cookie: no separator in cookie (session -, group g1)",
                "g1")
        stub.var.http_cookie = "session=" .. FORGED
        refusal(403, stub.WARN, "bad signature (session " .. EVENT_ID .. ", group g1)", "g1")
        assert.same({}, server.calls)
      end)

      it("reads the Cookie header by the protocol's grammar: 403 for a refused one", function()
        stub.var.http_cookie = "x=y,session=" .. COOKIE .. "; session=" .. COOKIE
        refusal(403, stub.WARN, "malformed cookie: cookie name after a comma (session -, group g1)",
                "g1")
        stub.var.http_cookie = "session=" .. COOKIE .. "; session=" .. FORGED
        refusal(403, stub.WARN, "malformed cookie: cookies of that name with different"
                .. " values (session -, group g1)", "g1")
        stub.var.http_cookie = "SESSION=" .. COOKIE
        refusal(401, stub.INFO, "no session cookie (session -, group g1)", "g1")
        assert.same({}, server.calls)
        stub.var.http_cookie = "a=1;\tsession= " .. COOKIE .. "\t; Session=" .. FORGED
        assert.same({ 200 }, { shared_session.authorize("g1") })
      end)

      it("is 403 without a group id", function()
        stub.var.http_cookie = "session=" .. COOKIE
        for _, group in ipairs { "", {}, true } do
          refusal(403, stub.WARN, "no group id given (session -, group nil)", group)
        end
        refusal(403, stub.WARN, "no group id given (session -, group nil)")
        assert.equal(0, sismembers())
      end)

      it("is 403 for another group, naming it safely in the log", function()
        stub.var.http_cookie = "session=" .. COOKIE
        refusal(403, stub.INFO, "not a member of the group (session " .. EVENT_ID .. ", group g?2)",
                "g\n2")
      end)

      it("is 503 when Redis is down, fails or answers oddly", function()
        stub.var.http_cookie = "session=" .. COOKIE
        server.down = "connection refused"
        refusal(503, stub.ERR, "redis unavailable: connect: connection refused"
                               .. " (session " .. EVENT_ID .. ", group g1)", "g1")
        server.down = nil
        server.errors.sismember = "ERR boom"
        refusal(503, stub.ERR, "redis error: ERR boom (session " .. EVENT_ID .. ", group g1)", "g1")
        server.errors.sismember = nil
        server.replies.sismember = stub.null
        refusal(503, stub.ERR, "unexpected redis reply to SISMEMBER"
                               .. " (session " .. EVENT_ID .. ", group g1)", "g1")
      end)
    end)

    describe("in stored mode", function()
      before_each(function()
        configure {}
        stub.var.http_cookie = "session=" .. COOKIE
      end)

      it("is 200 when the stored signature matches, in one round trip", function()
        assert.equal(200, shared_session.authorize("g1"))
        assert.same({ "send", "get p:signature:" .. SID,
                      "sismember p:groups:" .. SID .. " g1", "get p:not-before",
                      "pttl p:groups:" .. SID, "set_keepalive 60000 64" },
                    { unpack(server.calls, 4, 9) })
      end)

      it("is 403 when nothing is stored, or something else", function()
        server.strings["p:signature:" .. SID] = nil
        refusal(403, stub.INFO, "no stored signature (expired or destroyed)"
                                .. " (session -, group g1)", "g1")
        server.strings["p:signature:" .. SID] = ("B"):rep(27)
        refusal(403, stub.WARN, "bad signature (session -, group g1)", "g1")
        refusal(403, stub.WARN, "bad signature (session -, group g2)", "g2")
      end)
    end)

    describe("on the compact layout (PROTOCOL.md section 15)", function()
      local KEY = "p:{" .. SID .. "}"

      before_each(function()
        stub.var.http_cookie = "session=" .. COOKIE
        server.strings[KEY] = SIG .. '{"username":"ada","groups":["g1"]}'
      end)

      it("is 200 for a member, 403 otherwise, after one GET with not-before's", function()
        configure { secret = V.secret, salt = V.salt, key_layout = "compact" }
        assert.same({ 200 }, { shared_session.authorize("g1") })
        assert.same({ "send", "get " .. KEY, "get p:not-before", "pttl " .. KEY,
                      "set_keepalive 60000 64" }, { unpack(server.calls, 4, 8) })
        refusal(403, stub.INFO, "not a member of the group"
                .. " (session " .. EVENT_ID .. ", group g2)", "g2")
        assert.equal(0, sismembers())
      end)

      it("is 403 for a malformed or absent value, 503 when Redis is down", function()
        configure { secret = V.secret, salt = V.salt, key_layout = "compact" }
        server.strings[KEY] = SIG .. '["g1"]'
        local logged = #stub.logs
        assert.same({ 403, "not a member of the group" }, { shared_session.authorize("g1") })
        assert.matches("malformed session value", stub.log_lines(logged)[1], 1, true)
        server.strings[KEY] = nil
        refusal(403, stub.INFO, "not a member of the group"
                .. " (session " .. EVENT_ID .. ", group g1)", "g1")
        server.down = "connection refused"
        refusal(503, stub.ERR, "redis unavailable: connect: connection refused"
                               .. " (session " .. EVENT_ID .. ", group g1)", "g1")
      end)

      it("compares the value's signature in stored mode", function()
        configure { key_layout = "compact" }
        assert.equal(200, shared_session.authorize("g1"))
        server.strings[KEY] = ("B"):rep(27) .. '{"groups":["g1"]}'
        refusal(403, stub.WARN, "bad signature (session -, group g1)", "g1")
        server.strings[KEY] = SIG .. "{"
        local logged = #stub.logs
        assert.same({ 403, "no stored signature (expired or destroyed)" },
                    { shared_session.authorize("g1") })
        assert.matches("malformed session value", stub.log_lines(logged)[1], 1, true)
      end)
    end)

    describe("with the decision cache", function()
      local decisions, dict

      before_each(function()
        decisions = require "resty.shared_session.decisions"
        dict = stub.shared.shared_session
        configure { secret = V.secret, salt = V.salt,
                    decision_cache = { dict = "shared_session", ttl = 1 } }
        stub.var.http_cookie = "session=" .. COOKIE
      end)

      it("asks Redis every time while the subscriber is down", function()
        assert.equal(200, shared_session.authorize("g1"))
        assert.equal(200, shared_session.authorize("g1"))
        assert.equal(2, sismembers())
      end)

      -- What the subscriber does when it subscribes.
      local function subscribed()
        return decisions.open({ dict = dict }, 1000)
      end

      it("reuses a decision while the subscriber is up, for that cookie only", function()
        local live = subscribed()
        assert.equal(200, shared_session.authorize("g1"))
        assert.equal(200, shared_session.authorize("g1"))
        assert.equal(1, sismembers())
        stub.var.http_cookie = "session=" .. FORGED
        refusal(403, stub.WARN, "bad signature (session " .. EVENT_ID .. ", group g1)", "g1")
        assert.equal(1, sismembers())
        -- A revocation notice: the next check asks Redis again.
        stub.var.http_cookie = "session=" .. COOKIE
        decisions.forget({ dict = dict, ttl = 1 }, SID, live)
        server.sets["p:groups:" .. SID] = nil
        refusal(403, stub.INFO, "not a member of the group"
                .. " (session " .. EVENT_ID .. ", group g1)", "g1")
        assert.equal(2, sismembers())
      end)

      it("keeps a negative decision too, until a notice, and a decision at most ttl", function()
        local live = subscribed()
        assert.equal(403, (shared_session.authorize("g2")))
        refusal(403, stub.INFO, "not a member of the group"
                .. " (session " .. EVENT_ID .. ", group g2)", "g2")
        assert.equal(1, sismembers())
        -- The group is added, and the writer publishes.
        server.sets["p:groups:" .. SID]["g2"] = true
        decisions.forget({ dict = dict, ttl = 1 }, SID, live)
        assert.equal(200, shared_session.authorize("g2"))
        assert.equal(2, sismembers())
        assert.equal(200, shared_session.authorize("g1"))
        stub.sleep(1.01)
        assert.equal(200, shared_session.authorize("g1"))
        assert.equal(200, shared_session.authorize("g2"))
        assert.equal(5, sismembers())
      end)

      it("keeps decisions longer when every writer publishes, only while subscribed", function()
        configure { secret = V.secret, salt = V.salt,
                    decision_cache = { dict = "shared_session", all_writers_publish = true } }
        subscribed()
        assert.equal(200, shared_session.authorize("g1"))
        stub.sleep(50)
        assert.equal(200, shared_session.authorize("g1"))
        assert.equal(1, sismembers())
        -- The not-before mark (section 13) is read again once a minute, with
        -- one membership query; the decision itself lives on (a random time
        -- from half the ttl to the ttl: at least 150 s).
        stub.sleep(99)
        assert.equal(200, shared_session.authorize("g1"))
        assert.equal(2, sismembers())
        assert.equal(200, shared_session.authorize("g1"))
        assert.equal(2, sismembers())
        -- And it ends by the ttl (300 s).
        stub.sleep(151.01)
        assert.equal(200, shared_session.authorize("g1"))
        assert.equal(3, sismembers())
        decisions.close({ dict = dict })
        assert.equal(200, shared_session.authorize("g1"))
        assert.equal(4, sismembers())
      end)

      it("starts afresh after configure()", function()
        subscribed()
        assert.equal(200, shared_session.authorize("g1"))
        configure { secret = V.secret, salt = V.salt,
                    decision_cache = { dict = "shared_session", ttl = 1 } }
        assert.equal(200, shared_session.authorize("g1"))
        assert.equal(2, sismembers())
      end)
    end)
  end)

  describe("access", function()
    it("returns 200, or ends the request with the status", function()
      configure { secret = V.secret, salt = V.salt }
      stub.var.http_cookie = "session=" .. COOKIE
      assert.equal(200, shared_session.access("g1"))
      assert.has_error(function() shared_session.access("g2") end, "ngx.exit(403)")
      stub.var.http_cookie = nil
      assert.has_error(function() shared_session.access("g1") end, "ngx.exit(401)")
      server.down = "timeout"
      stub.var.http_cookie = "session=" .. COOKIE
      assert.has_error(function() shared_session.access("g1") end, "ngx.exit(503)")
    end)

    it("sets reason_var to the refusal's word (reasons.lua), and leaves it alone on 200", function()
      configure { secret = V.secret, salt = V.salt }
      local function word(cookie_header, group)
        stub.var.http_cookie = cookie_header
        stub.var.why = nil
        pcall(shared_session.access, { group = group, reason_var = "why" })
        return stub.var.why
      end
      assert.is_nil(word("session=" .. COOKIE, "g1"))
      assert.equal("not_member", word("session=" .. COOKIE, "g2"))
      assert.equal("no_session", word(nil, "g1"))
      assert.equal("two_sessions", word("session=" .. COOKIE .. "; session=x" .. COOKIE, "g1"))
      assert.equal("no_session", word("session=x" .. COOKIE, "g1"))
      server.down = "timeout"
      assert.equal("unavailable", word("session=" .. COOKIE, "g1"))
    end)
  end)

  describe("check (a check named in configure)", function()
    local CHECKS = {
      by_var = { group_var = "group_id", reason_var = "why" },
      constant = { group = "g1" },
    }

    it("answers as access() with the same options, the variable read per request", function()
      configure { secret = V.secret, salt = V.salt, checks = CHECKS }
      stub.var.http_cookie = "session=" .. COOKIE
      stub.var.group_id = "g1"
      assert.equal(200, shared_session.check("by_var"))
      assert.equal(200, shared_session.check("constant"))
      stub.var.group_id = "g2"
      assert.has_error(function() shared_session.check("by_var") end, "ngx.exit(403)")
      assert.equal("not_member", stub.var.why)
      stub.var.why = nil
      stub.var.group_id = nil
      assert.has_error(function() shared_session.check("by_var") end, "ngx.exit(403)")
      assert.equal("not_member", stub.var.why)  -- ("no group id given")
      stub.var.http_cookie = nil
      stub.var.group_id = "g1"
      assert.has_error(function() shared_session.check("by_var") end, "ngx.exit(401)")
      assert.equal("no_session", stub.var.why)
      server.down = "timeout"
      stub.var.http_cookie = "session=" .. COOKIE
      assert.has_error(function() shared_session.check("constant") end, "ngx.exit(503)")
    end)

    it("is 503 for a name no check has, and follows a new configure()", function()
      configure { secret = V.secret, salt = V.salt, checks = CHECKS }
      stub.var.http_cookie = "session=" .. COOKIE
      assert.has_error(function() shared_session.check("other") end, "ngx.exit(503)")
      assert.equal(200, shared_session.check("constant"))
      configure { secret = V.secret, salt = V.salt,
                  checks = { constant = { group = "g2" }, other = { group = "g1" } } }
      assert.has_error(function() shared_session.check("constant") end, "ngx.exit(403)")
      assert.equal(200, shared_session.check("other"))
    end)

    it("are checked by configure, which names the bad option", function()
      local function bad(checks, option)
        local ok, err = pcall(configure, { secret = V.secret, salt = V.salt, checks = checks })
        assert.is_false(ok)
        assert.matches('option "' .. option .. '"', err, 1, true)
      end
      bad("x", "checks")
      bad({ [1] = { group = "g1" } }, "checks.1")
      bad({ a = "g1" }, "checks.a")
      bad({ a = {} }, "checks.a")
      bad({ a = { group = "g1", group_var = "v" } }, "checks.a")
      bad({ a = { group = "" } }, "checks.a.group")
      bad({ a = { group_var = "" } }, "checks.a.group_var")
      bad({ a = { group = "g1", generation_var = 7 } }, "checks.a.generation_var")
      bad({ a = { group = "g1", reason_var = false } }, "checks.a.reason_var")
      bad({ a = { group = "g1", groupvar = "x" } }, "checks.a.groupvar")
    end)
  end)

  describe("start_subscriber", function()
    it("is nil and an error without a decision cache", function()
      assert.same({ nil, "no decision_cache configured" },
                  { shared_session.start_subscriber() })
      assert.is_true(shared_session.configure {})
      local ok, err = shared_session.start_subscriber()
      assert.is_nil(ok)
      assert.equal("no decision_cache configured", err)
    end)

    it("is false outside worker 0", function()
      assert.is_true(shared_session.configure {
        decision_cache = { dict = "shared_session" },
      })
      stub.process.worker_id = 1
      local ok = shared_session.start_subscriber()
      stub.process.worker_id = 0
      assert.is_false(ok)
    end)

    it("is nil and an error when the timer cannot start", function()
      assert.is_true(shared_session.configure {
        decision_cache = { dict = "shared_session" },
      })
      local ok, err = shared_session.start_subscriber()
      assert.is_nil(ok)
      assert.matches("^timer: ", err)
    end)
  end)

  describe("new (0.1.x)", function()
    it("gives sessions whose methods are this module's functions", function()
      stub.var.http_cookie = "session=" .. COOKIE
      local session = assert(shared_session:new(server.lib.new()))
      assert.equal(shared_session, getmetatable(session).__index)
      assert.equal("p", (shared_session:new(nil, "session", "p")).key_prefix)
      assert.equal("resty_shared_session", session.key_prefix)
      assert.equal(SID, session:get_cookie_sid())
      assert.same({ nil, "no session cookie" }, { shared_session:new(nil, "other") })
    end)

    it("takes its defaults and its secret from the configuration in force", function()
      stub.var.http_cookie = "session=" .. COOKIE
      configure {}
      local session = assert(shared_session:new(server.lib.new()))
      assert.equal("p", session.key_prefix)
      assert.is_true(session:verify_signature())            -- stored: Redis has SIG
      assert.equal("get p:signature:" .. SID, server.calls[#server.calls])
      configure { secret = "another secret" }
      assert.same({ nil, "bad signature" }, { session:verify_signature() })
      configure { secret = V.secret, salt = V.salt }
      local calls = #server.calls
      assert.is_true(session:verify_signature())
      assert.equal(calls, #server.calls)                    -- local: no Redis
      assert.is_true(session:is_group_member("g1"))
      assert.same({ "g1" }, session:list_allowed_groups())
    end)
  end)
end)
