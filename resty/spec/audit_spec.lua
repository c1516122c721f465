-- resty.shared_session.audit: one JSON line per refusal (none without a
-- cookie), a sampled fraction of allows, a per-worker limit with the count
-- of lines dropped, and the session's event id (protocol/events.json), never
-- its id. Real nginx: t/metrics.spec.ts.

describe("resty.shared_session.audit", function()
  local stub, restore, audit, log, cjson

  -- events.json's fourth vector.
  local SECRET = "dev-secret"
  local SID = "4f1b0f0e-2f0d-4b7a-9c53-1f1e2d3c4b5a"
  local EVENT_ID = "aeeffb4b25192ba08d41e989563180c2"

  local CHECK   -- config.lua's option checks, as configure() hands them

  -- How configure() reports a bad option.
  local function option(name, message)
    return 'shared_session.configure: option "' .. name .. '" ' .. message
  end

  before_each(function()
    stub = require "ngx_stub"
    restore = stub.install()
    CHECK = require("resty.shared_session.config").CHECK
    audit = require "resty.shared_session.audit"
    log = require "resty.shared_session.log"
    cjson = require "cjson"
  end)

  after_each(function()
    restore()
  end)

  local function new(opts, secret)
    return audit.new(opts, CHECK, secret and assert(log.event_id_key(secret)) or nil)
  end

  -- The audit objects written since `from`, and their levels.
  local function lines(from)
    local out, levels = {}, {}
    for i = from + 1, #stub.logs do
      local entry = stub.logs[i]
      local json = entry.msg:match("^shared_session audit: (.*)$")
      if json then
        out[#out + 1] = cjson.decode(json)
        levels[#levels + 1] = entry.level
      end
    end
    return out, levels
  end

  it("is off (nil) without the option, and checks it", function()
    assert.is_nil(new(nil))
    assert.is_nil(new(false))
    assert.is_table(new(true))
    assert.has_error(function() new({ level = "loud" }) end, option("audit.level", "must be one of"
                     .. " debug, info, notice, warn, error, crit, alert, emerg"))
    assert.has_error(function() new({ allow_sample = 2 }) end,
                     option("audit.allow_sample", "must be at most 1"))
    assert.has_error(function() new({ max_lines_per_second = 0 }) end,
                     option("audit.max_lines_per_second", "must be positive"))
    assert.has_error(function() new({ max_lines_per_second = 1.5 }) end,
                     option("audit.max_lines_per_second", "must be an integer"))
    assert.has_error(function() new({ colour = 1 }) end, option("audit.colour", "is unknown"))
    assert.has_error(function() new("yes") end, option("audit", "must be a table, or true"))
  end)

  it("writes a refusal with its reason, status, event id and time; none without a cookie",
     function()
    local a = new({}, SECRET)
    local from = #stub.logs
    audit.refused(a, 403, "not_member", SID)
    audit.refused(a, 401, "no_session", nil, true)
    audit.refused(a, 503, "unavailable", SID)
    local out, levels = lines(from)
    assert.same({
      { result = "refused", reason = "not_member", status = 403, session = EVENT_ID,
        at = math.floor(stub.clock.now * 1000) },
      { result = "unavailable", reason = "unavailable", status = 503, session = EVENT_ID,
        at = math.floor(stub.clock.now * 1000) },
    }, out)
    assert.same({ stub.WARN, stub.WARN }, levels)
    for i = from + 1, #stub.logs do
      assert.is_nil(stub.logs[i].msg:find(SID:sub(1, 6), 1, true))
    end
  end)

  it("says null for the session without a secret (stored mode) or without a session id", function()
    local from = #stub.logs
    audit.refused(new({ level = "info" }), 403, "session_ended", SID)
    audit.refused(new({}, SECRET), 403, "no_session", nil)
    local out, levels = lines(from)
    assert.same({ cjson.null, cjson.null }, { out[1].session, out[2].session })
    assert.equal(stub.INFO, levels[1])
  end)

  it("writes at most max_lines_per_second a second per worker; the next line says how"
     .. " many were dropped", function()
    local a = new({ max_lines_per_second = 3 }, SECRET)
    local from = #stub.logs
    for _ = 1, 10 do
      audit.refused(a, 403, "no_session", SID)
    end
    assert.equal(3, #lines(from))
    stub.clock.now = stub.clock.now + 1
    audit.refused(a, 403, "no_session", SID)
    audit.refused(a, 403, "no_session", SID)
    local out = lines(from)
    assert.equal(5, #out)
    assert.same({ nil, nil, nil, 7, nil }, { out[1].dropped, out[2].dropped, out[3].dropped,
                                            out[4].dropped, out[5].dropped })
  end)

  it("writes a sampled fraction of allows", function()
    local from = #stub.logs
    audit.allowed(new({}, SECRET), SID)                      -- allow_sample 0: none
    assert.same({}, lines(from))
    local all = new({ allow_sample = 1 }, SECRET)
    audit.allowed(all, SID)
    assert.same({ { result = "allowed", reason = "none", status = 200, session = EVENT_ID,
                    at = math.floor(stub.clock.now * 1000) } }, lines(from))
    local random = math.random
    local draws = { 0.1, 0.6, 0.2, 0.9 }
    math.random = function() return table.remove(draws, 1) end   -- luacheck: ignore
    local ok, err = pcall(function()
      -- (The module keeps math.random from when it was loaded.)
      package.loaded["resty.shared_session.audit"] = nil
      audit = require "resty.shared_session.audit"
      local half = new({ allow_sample = 0.5 }, SECRET)
      for _ = 1, 4 do
        audit.allowed(half, SID)
      end
    end)
    math.random = random   -- luacheck: ignore
    assert(ok, err)
    assert.equal(3, #lines(from))
  end)
end)
