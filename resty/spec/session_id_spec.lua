-- resty.shared_session.session_id: timed session ids (PROTOCOL.md section
-- 11), against every case of protocol/session-ids.json.
local cjson = require "cjson"

local f = assert(io.open("../protocol/session-ids.json", "rb"))
local cases = cjson.decode(f:read("*a"))
f:close()

describe("resty.shared_session.session_id", function()
  local session_id = require "resty.shared_session.session_id"

  describe("times", function()
    for _, case in ipairs(cases.read) do
      it(case.why, function()
        local issued, deadline = session_id.times(case.sid)
        if case.timed then
          assert.are.equal(case.issued_ms, issued)
          assert.are.equal(case.deadline_ms, deadline)
        else
          assert.is_nil(issued)
          assert.is_nil(deadline)
        end
      end)
    end

    for _, case in ipairs(cases.make) do
      it("reads back what a writer made: " .. case.sid, function()
        local issued, deadline = session_id.times(case.sid)
        assert.are.equal(case.issued_ms, issued)
        assert.are.equal(case.deadline_ms, deadline)
      end)
    end
  end)

  describe("ended", function()
    local sid = "000000000064_0000000007d0_AAECAwQFBgcICQoLDA0ODw"

    it("is false before the deadline and true from it on", function()
      assert.is_false(session_id.ended(sid, 1999))
      assert.is_true(session_id.ended(sid, 2000))
      assert.is_true(session_id.ended(sid, 2001))
    end)

    it("is never true for a timed id without a deadline", function()
      local forever = "000000000064_000000000000_AAECAwQFBgcICQoLDA0ODw"
      assert.is_false(session_id.ended(forever, 2 ^ 48))
    end)

    it("reads a whole cookie value <sid>.<sig> as its id", function()
      local sig = ("A"):rep(27)
      assert.is_false(session_id.ended(sid .. "." .. sig, 1999))
      assert.is_true(session_id.ended(sid .. "." .. sig, 2000))
      assert.is_false(session_id.ended(sid .. "x" .. sig, 2000))
      assert.is_false(session_id.ended(sid .. "." .. sig .. "A", 2000))
    end)

    it("is never true for an untimed id", function()
      for _, case in ipairs(cases.read) do
        if not case.timed then
          assert.is_false(session_id.ended(case.sid, 2 ^ 48))
        end
      end
    end)
  end)
end)
