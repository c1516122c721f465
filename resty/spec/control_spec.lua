-- resty.shared_session.control: PROTOCOL.md section 13 at nginx, outside
-- nginx: the mark against every case of protocol/control.json, the notices'
-- reading, and what is kept in the dict under which epoch. The real thing
-- (a real nginx, redis-server, the query, the variable) is in
-- t/control.spec.ts.
local cjson = require "cjson"

local f = assert(io.open("../protocol/control.json", "rb"))
local cases = cjson.decode(f:read("*a"))
f:close()

describe("resty.shared_session.control", function()
  local stub, restore, control, decisions, config

  setup(function()
    stub = require "ngx_stub"
    restore = stub.install {
      ["resty.redis"] = false, ["nginx.redis"] = false,
      ["resty.redis.sentinel"] = false, ["nginx.redis.sentinel"] = false,
    }
    stub.shared.shared_session = stub.new_dict()
    control = require "resty.shared_session.control"
    decisions = require "resty.shared_session.decisions"
    config = require "resty.shared_session.config"
  end)

  teardown(function()
    stub.shared.shared_session = nil
    restore()
  end)

  describe("the not-before mark (control.json)", function()
    for _, case in ipairs(cases.mark) do
      it(case.why, function()
        assert.equal(case.refused, control.refuses(case.sid, case.mark_ms))
      end)
    end
  end)

  describe("notices (control.json)", function()
    for _, case in ipairs(cases.notices) do
      it(case.payload .. " is " .. case.kind, function()
        if case.kind == "session" then
          assert.is_false(control.is_notice(case.payload))
          return
        end
        assert.is_true(control.is_notice(case.payload))
        local kind, a, b = control.parse(case.payload)
        if case.kind == "ignored" then
          assert.is_nil(kind)
        elseif case.kind == "not-before" then
          assert.same({ "not-before", case.ms }, { kind, a })
        elseif case.kind == "generation" then
          assert.same({ "generation", case.n, case.group }, { kind, a, b })
        else
          assert.same({ "ack", case.id }, { kind, a })
        end
      end)
    end
  end)

  describe("what is kept, under which epoch", function()
    local dc

    before_each(function()
      stub.shared.shared_session = stub.new_dict()
      dc = assert(config.new {
        key_prefix = "p", decision_cache = { dict = "shared_session" },
      }).decision_cache
    end)

    it("knows nothing without a live epoch, and keeps nothing then", function()
      assert.is_nil(control.known(dc, "g", true))
      control.apply(dc, "!not-before 5")
      assert.is_nil(control.known(dc, "g", false))
    end)

    it("knows the mark and generation a miss read, until a new epoch", function()
      dc.dict:set(decisions.EPOCH_KEY, "e1")
      local epoch, mark = control.known(dc, "g", true)
      assert.is_not_nil(epoch)
      assert.is_nil(mark)
      control.remember(dc, epoch, "g", 0, 4)
      assert.same({ epoch, 0, 4 }, { control.known(dc, "g", true) })
      -- Another group's generation is not known yet: ask Redis.
      assert.same({ epoch }, { control.known(dc, "h", true) })
      -- Without the generation, the mark is enough.
      assert.same({ epoch, 0 }, { control.known(dc, "h", false) })
      dc.dict:set(decisions.EPOCH_KEY, "e2")
      local epoch2, mark2 = control.known(dc, "g", true)
      assert.is_not.equal(epoch, epoch2)
      assert.is_nil(mark2)
    end)

    it("lets a notice win over a miss whose query was in flight", function()
      dc.dict:set(decisions.EPOCH_KEY, "e1")
      local epoch = control.known(dc, "g", true)
      control.apply(dc, "!not-before 1796169600000")
      control.apply(dc, "!generation 9 g")
      control.remember(dc, epoch, "g", 0, 8)     -- read before the notices
      assert.same({ epoch, 1796169600000, 9 }, { control.known(dc, "g", true) })
      control.apply(dc, "!not-before 0")         -- an operator lifted it
      assert.same({ epoch, 0, 9 }, { control.known(dc, "g", true) })
      control.apply(dc, "!purge everything")     -- unknown: ignored
      assert.same({ epoch, 0, 9 }, { control.known(dc, "g", true) })
    end)

    it("says when a notice changed a kept generation (workers' entries carry it), and"
       .. " reads the revocation count before the values", function()
      dc.dict:set(decisions.EPOCH_KEY, "e1")
      dc.dict:set(decisions.COUNT_KEY, 41)
      assert.is_true(control.apply(dc, "!generation 9 g"))
      assert.is_falsy((control.apply(dc, "!generation 9 g")))     -- the same value
      assert.is_falsy((control.apply(dc, "!not-before 5")))       -- heartbeat's
      assert.is_falsy((control.apply(dc, "!generation 8 g", nil, true)))  -- never lowered
      assert.is_true(control.apply(dc, "!generation 10 g", nil, true))
      assert.same({ 10, 41 }, { select(3, control.known(dc, "g", true)) })
    end)
  end)
end)
