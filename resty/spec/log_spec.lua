-- resty.shared_session.log: what a log line may say (README, "Statuses and
-- log lines"): never a whole session id, never raw bytes from outside.

describe("resty.shared_session.log", function()
  local restore, log

  setup(function()
    restore = require("ngx_stub").install()
    log = require "resty.shared_session.log"
  end)

  teardown(function()
    restore()
  end)

  describe("session_hint", function()
    -- events.json's fourth vector: secret "dev-secret".
    local SID = "4f1b0f0e-2f0d-4b7a-9c53-1f1e2d3c4b5a"

    after_each(function()
      log.use_event_key(nil)
    end)

    it("is the session's event id under the configured secret, no part of the id", function()
      log.use_event_key(assert(log.event_id_key("dev-secret")))
      assert.equal("aeeffb4b25192ba08d41e989563180c2", log.session_hint(SID))
      assert.not_matches(SID:sub(1, 6), log.session_hint(SID), 1, true)
    end)

    it("is '-' without a session id, or without a secret (stored mode)", function()
      assert.equal("-", log.session_hint(SID))
      log.use_event_key(assert(log.event_id_key("dev-secret")))
      assert.equal("-", log.session_hint(nil))
      assert.equal("-", log.session_hint(false))
    end)
  end)

  describe("event_id (PROTOCOL.md section 16.1, protocol/events.json)", function()
    local cjson = require "cjson"
    local f = assert(io.open("../protocol/events.json", "rb"))
    local cases = cjson.decode(f:read("*a")).vectors
    f:close()

    it("has the vectors", function()
      assert.is_true(#cases >= 4)
    end)

    for _, case in ipairs(cases) do
      it(case.session_id .. " under its secret", function()
        local key = assert(log.event_id_key(case.secret))
        assert.equal(case.event_id, log.event_id(key, case.session_id))
      end)
    end

    it("differs with the secret", function()
      local sid = cases[1].session_id
      assert.are_not.equal(log.event_id(log.event_id_key("one"), sid),
                           log.event_id(log.event_id_key("two"), sid))
    end)

    it("is '-' without a session id", function()
      assert.equal("-", log.event_id(log.event_id_key("s"), nil))
    end)
  end)

  describe("group_hint", function()
    it("keeps the characters of ordinary names", function()
      assert.equal("g1", log.group_hint("g1"))
      assert.equal("team-a_b.c:d@e/f", log.group_hint("team-a_b.c:d@e/f"))
    end)

    it("replaces anything else by '?'", function()
      assert.equal("a?b?c??", log.group_hint("a b\nc\0\255"))
      assert.equal("????", log.group_hint("\"%;)"))
    end)

    it("cuts a name to 64 characters", function()
      assert.equal(("x"):rep(64), log.group_hint(("x"):rep(100)))
    end)

    it("writes other values with tostring", function()
      assert.equal("7", log.group_hint(7))
      assert.equal("nil", log.group_hint(nil))
    end)
  end)
end)
