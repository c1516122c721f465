-- resty.shared_session.refresh: activity at nginx keeps a session alive
-- (PROTOCOL.md section 12), outside nginx: how often a refresh starts (per
-- session, per worker, across workers through the dict), what the timer
-- sends, what a failure does, and the `refresh` options. The script itself
-- runs against a real Redis under t/ (refresh.spec.ts).
local fake_redis = require "fake_redis"

local UUID = "3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f"
-- A timed id (PROTOCOL.md section 11): issued 0x18bcfe56800 ms, deadline
-- 0x18bcfe5a680 ms (16 s later).
local TIMED = "018bcfe56800_018bcfe5a680_AAECAwQFBgcICQoLDA0ODw"

describe("resty.shared_session.refresh", function()
  local stub, restore, server, refresh, config, dict, timers

  setup(function()
    stub = require "ngx_stub"
  end)

  before_each(function()
    server = fake_redis.server()
    restore = stub.install { ["resty.redis"] = server.lib, ["nginx.redis"] = false }
    dict = stub.new_dict()
    stub.shared.decisions = dict
    timers = {}
    stub.process.timer = function(delay, fn, ...)
      timers[#timers + 1] = { delay = delay, fn = fn, args = { ... } }
      return true
    end
    refresh = require "resty.shared_session.refresh"
    config = require "resty.shared_session.config"
  end)

  after_each(function()
    stub.process.timer = nil
    stub.shared.decisions = nil
    restore()
  end)

  local function conf(opts)
    opts = opts or {}
    opts.decision_cache = opts.decision_cache == nil and { dict = "decisions" }
                          or opts.decision_cache or nil
    return assert(config.new(opts))
  end

  local function maybe(c, sid)
    refresh.maybe(c.refresh, c.keyspace, sid)
  end

  -- Runs the timers started so far, as nginx would after the request.
  local function run_timers()
    local pending = timers
    timers = {}
    for _, t in ipairs(pending) do
      t.fn(false, unpack(t.args))
    end
  end

  local function commands(name)
    local found = {}
    for _, call in ipairs(server.calls) do
      if call == name or call:find("^" .. name .. " ") then
        found[#found + 1] = call
      end
    end
    return found
  end

  describe("how often", function()
    it("starts one refresh per session per interval, however many requests it allows", function()
      local c = conf { refresh = { interval = 30 } }
      server.replies.evalsha = 3600000  -- _idle: 1 h
      for _ = 1, 100 do
        maybe(c, UUID)
      end
      assert.equal(1, #timers)
      assert.equal(refresh.FLUSH_DELAY, timers[1].delay)
      run_timers()
      assert.equal(1, #commands("evalsha"))
      stub.sleep(29.9)
      maybe(c, UUID)
      assert.equal(0, #timers)
      stub.sleep(0.2)
      maybe(c, UUID)
      -- Another session is another count.
      maybe(c, TIMED)
      run_timers()
      assert.equal(3, #commands("evalsha"))
    end)

    it("sends the refreshes a worker starts before its timer runs together: one timer,"
       .. " one pipeline", function()
      local c = conf {}
      server.replies.evalsha = 60000
      for i = 1, 150 do
        maybe(c, UUID:sub(1, 33) .. ("%03d"):format(i))
      end
      assert.equal(1, #timers)
      run_timers()
      assert.equal(150, #commands("evalsha"))
      -- refresh.BATCH (100) to a write, on one pooled connection.
      assert.equal(2, #commands("send"))
      assert.equal(2, server.pooled)
      assert.equal(0, server.closed)
      -- Each was answered: none is sent again within the interval.
      for i = 1, 150 do
        maybe(c, UUID:sub(1, 33) .. ("%03d"):format(i))
      end
      assert.equal(0, #timers)
    end)

    it("counts across workers through the dict: another worker waits for the mark", function()
      local c = conf { refresh = { interval = 30 } }
      maybe(c, UUID)
      -- Another worker: the module loaded afresh (its own memory), the same dict.
      package.loaded["resty.shared_session.refresh"] = nil
      local other = require "resty.shared_session.refresh"
      for _ = 1, 10 do
        other.maybe(c.refresh, c.keyspace, UUID)
      end
      assert.equal(1, #timers)
      stub.sleep(30.1)
      other.maybe(c.refresh, c.keyspace, UUID)
      assert.equal(2, #timers)
    end)

    it("another worker waits until the mark ends: half a short idle timeout once"
       .. " Redis has answered, RETRY while the refresh is under way", function()
      local c = conf { refresh = { interval = 60 } }
      server.replies.evalsha = 4000     -- _idle: 4 s
      maybe(c, UUID)
      package.loaded["resty.shared_session.refresh"] = nil
      local other = require "resty.shared_session.refresh"
      local function other_maybe()
        other.maybe(c.refresh, c.keyspace, UUID)
      end
      -- Under way: the other worker looks again after RETRY, not after the
      -- interval (its requests may be all the session has).
      other_maybe()
      assert.equal(1, #timers)
      run_timers()
      -- Answered: the mark now ends at half the idle timeout (2 s), and the
      -- other worker, which had looked during the refresh, starts the next
      -- one then, though the interval is 60 s.
      stub.sleep(refresh.RETRY + 0.1)
      other_maybe()
      assert.equal(0, #timers)
      stub.sleep(2 - refresh.RETRY)
      other_maybe()
      assert.equal(1, #timers)
    end)

    it("a worker whose memory started over asks the dict once per mark, not once a request",
       function()
      local c = conf { refresh = { interval = 30 } }
      server.replies.evalsha = 3600000  -- _idle: 1 h
      maybe(c, UUID)
      run_timers()
      package.loaded["resty.shared_session.refresh"] = nil
      local other = require "resty.shared_session.refresh"
      local adds = 0
      local add = dict.add
      dict.add = function(...)
        adds = adds + 1
        return add(...)
      end
      for _ = 1, 20 do
        other.maybe(c.refresh, c.keyspace, UUID)
        stub.sleep(1)
      end
      dict.add = add
      assert.equal(1, adds)
      assert.equal(0, #timers)
    end)

    it("says until when it need not be asked again (what a decision entry keeps): 0 while"
       .. " a refresh is under way, in this worker or another", function()
      local c = conf { refresh = { interval = 60 } }
      server.replies.evalsha = 4000     -- _idle: 4 s
      assert.equal(0, refresh.maybe(c.refresh, c.keyspace, UUID))
      assert.equal(0, refresh.maybe(c.refresh, c.keyspace, UUID))
      package.loaded["resty.shared_session.refresh"] = nil
      local other = require "resty.shared_session.refresh"
      assert.equal(0, other.maybe(c.refresh, c.keyspace, UUID))
      run_timers()
      -- Answered: half the idle timeout, not the interval.
      local now = stub.clock.now
      assert.near(now + 2, refresh.maybe(c.refresh, c.keyspace, UUID), 0.01)
      stub.sleep(refresh.RETRY + 0.01)
      assert.near(now + 2, other.maybe(c.refresh, c.keyspace, UUID), 0.02)
      assert.equal(0, #timers)
    end)

    it("is due once the session has not been extended for the interval, which follows its"
       .. " idle timeout when unset (31 days: about 3 days, not a minute)", function()
      local c = conf {}
      server.replies.evalsha = 31 * 86400 * 1000
      local now = stub.clock.now
      assert.equal(0, refresh.maybe(c.refresh, c.keyspace, UUID))
      run_timers()
      assert.equal(1, #commands("evalsha"))
      -- Answered: the keys end in 31 days; not due until they are closer than
      -- idle - interval, i.e. interval (267,840 s) from now.
      assert.near(now + 267840, refresh.maybe(c.refresh, c.keyspace, UUID), 0.1)
      stub.sleep(86400)
      maybe(c, UUID)
      assert.equal(0, #timers)
      stub.sleep(267840 - 86400 + 1)
      maybe(c, UUID)
      assert.equal(1, #timers)
    end)

    it("learns from the expiry read with a decision: once the idle timeout is known, a"
       .. " session another party extended is not refreshed", function()
      local c = conf { refresh = { interval = 60 } }
      server.replies.evalsha = 600000  -- _idle: 10 min
      maybe(c, UUID)
      run_timers()
      stub.sleep(61)    -- due, by the expiry this refresh set
      -- The application touched it 1 s ago: the miss read 599 s left.
      local left = stub.clock.now + 599
      assert.near(left - 600 + 60, refresh.maybe(c.refresh, c.keyspace, UUID, left), 0.01)
      assert.equal(0, #timers)
      -- Without that reading, or with an older expiry, it is due.
      stub.sleep(60)
      refresh.maybe(c.refresh, c.keyspace, UUID, stub.clock.now + 500)
      assert.equal(1, #timers)
    end)

    it("without a dict, counts per worker", function()
      local c = conf { decision_cache = false, refresh = { interval = 30 } }
      assert.is_nil(c.refresh.dict)
      maybe(c, UUID)
      maybe(c, UUID)
      assert.equal(1, #timers)
    end)

    it("once the session's idle timeout is known, waits at most half of it", function()
      local c = conf { refresh = { interval = 60 } }
      server.replies.evalsha = 4000     -- _idle: 4 s
      maybe(c, UUID)
      run_timers()
      stub.sleep(1.9)
      maybe(c, UUID)
      assert.equal(0, #timers)
      stub.sleep(0.2)
      maybe(c, UUID)
      assert.equal(1, #timers)
    end)
  end)

  describe("the timer", function()
    it("sends one EVALSHA with the three keys, nginx's clock and the id's deadline;"
       .. " EVAL when the server lacks the script", function()
      local c = conf { key_prefix = "p" }
      maybe(c, TIMED)
      run_timers()
      local sha = commands("evalsha")
      assert.equal(1, #sha)
      local now = math.floor(stub.clock.now * 1000)
      local hex = stub.sha1_bin(refresh.SCRIPT):gsub(".", function(byte)
        return ("%02x"):format(byte:byte())
      end)
      -- Then what the user's index needs (section 13.1): the user id field,
      -- the prefix and the session id.
      assert.equal(("evalsha %s 3 p:data:%s p:signature:%s p:groups:%s %d %d username p %s"):format(
        hex, TIMED, TIMED, TIMED, now, 0x018bcfe5a680, TIMED), sha[1])
      -- NOSCRIPT (the fake's default): the same call as EVAL.
      assert.equal(1, #commands("eval"))
      assert.equal(1, server.pooled)
    end)

    it("sends the one key on the compact layout (section 15), and asks for the user id"
       .. " as on the cluster layout (section 14.1)", function()
      server.replies.evalsha = 60000
      local c = conf { key_prefix = "p", key_layout = "compact" }
      maybe(c, TIMED)
      run_timers()
      local cl = conf { key_prefix = "p", key_layout = "cluster" }
      maybe(cl, UUID)
      run_timers()
      local sha = commands("evalsha")
      assert.equal(2, #sha)
      local now = math.floor(stub.clock.now * 1000)
      assert.matches((" 1 p:{%s} %d %d username p %s cluster"):format(
        TIMED, now, 0x018bcfe5a680, TIMED), sha[1], 1, true)
      assert.is_nil(sha[1]:find("data", 1, true))
      assert.matches((" 3 p:{%s}:data p:{%s}:signature p:{%s}:groups %d 0 username p %s"
                      .. " cluster"):format(UUID, UUID, UUID, now, UUID), sha[2], 1, true)
      -- On one Redis: the configured server.
      assert.equal(2, server.pooled)
    end)

    it("sends the deadline 0 for an untimed id", function()
      local c = conf {}
      server.replies.evalsha = -1
      maybe(c, UUID)
      run_timers()
      assert.truthy(commands("evalsha")[1]:find(" 0 username ", 1, true))
      assert.equal(0, #commands("eval"))
    end)

    it("a Redis failure extends nothing, is logged, and is tried again after a second,"
       .. " not on every request", function()
      local c = conf { refresh = { interval = 60 } }
      server.down = "connection refused"
      local since = #stub.logs
      maybe(c, UUID)
      run_timers()
      assert.equal(0, #commands("evalsha"))
      local lines = stub.log_lines(since)
      assert.equal(1, #lines)
      assert.truthy(lines[1]:find("session not refreshed: redis unavailable", 1, true))
      maybe(c, UUID)
      assert.equal(0, #timers)
      stub.sleep(1.01)
      server.down = nil
      server.replies.evalsha = 60000
      maybe(c, UUID)
      run_timers()
      assert.equal(1, #commands("evalsha"))
    end)

    it("an error reply extends nothing and waits the interval (the connection, which"
       .. " read the whole reply, goes back to the pool)", function()
      local c = conf { refresh = { interval = 30 } }
      server.errors.evalsha = "NOPERM this user has no permissions to run the 'evalsha' command"
      local since = #stub.logs
      maybe(c, UUID)
      run_timers()
      assert.truthy(stub.log_lines(since)[1]:find("redis error: NOPERM", 1, true))
      assert.equal(0, server.closed)
      assert.equal(1, server.pooled)
      assert.equal(0, #commands("eval"))
      stub.sleep(2)
      maybe(c, UUID)
      assert.equal(0, #timers)
      stub.sleep(28.1)
      maybe(c, UUID)
      assert.equal(1, #timers)
    end)

    it("a connection that fails mid-batch is closed, not pooled; every session of the"
       .. " batch is tried again after a second", function()
      local c = conf { refresh = { interval = 60 } }
      server.errors.send = "timeout"
      maybe(c, UUID)
      maybe(c, TIMED)
      run_timers()
      assert.equal(1, server.closed)
      assert.equal(0, server.pooled)
      server.errors.send = nil
      server.replies.evalsha = 60000
      stub.sleep(1.01)
      maybe(c, UUID)
      maybe(c, TIMED)
      run_timers()
      assert.equal(2, #commands("evalsha"))
      assert.equal(1, server.pooled)
    end)

    it("logs failures once per 10 s per worker, counting the others", function()
      local c = conf {}
      server.down = "connection refused"
      local since = #stub.logs
      for i = 1, 5 do
        maybe(c, UUID:sub(1, 35) .. i)
      end
      run_timers()
      assert.equal(1, #stub.log_lines(since))
      stub.sleep(10)
      maybe(c, UUID:sub(1, 35) .. "6")
      run_timers()
      local lines = stub.log_lines(since)
      assert.equal(2, #lines)
      assert.truthy(lines[2]:find("; 4 more failed since the last line", 1, true), lines[2])
    end)

    it("a timer that cannot start raises nothing, and is tried again later", function()
      local c = conf {}
      stub.process.timer = nil
      assert.has_no.errors(function()
        maybe(c, UUID)
      end)
      assert.truthy(stub.log_lines()[#stub.logs]:find("no timer", 1, true))
    end)

    it("does nothing at all for a premature timer (the worker is exiting)", function()
      local c = conf {}
      maybe(c, UUID)
      timers[1].fn(true, unpack(timers[1].args))
      assert.equal(0, #server.calls)
    end)
  end)

  describe("options", function()
    it("is on by default, with an interval that follows the idle timeout and the decision"
       .. " cache's dict", function()
      local c = conf {}
      assert.is_nil(c.refresh.interval)
      -- PROTOCOL.md section 12: min(idle / 2, max(60, idle / 10)).
      assert.equal(1, refresh.interval_for(c.refresh, 2))
      assert.equal(60, refresh.interval_for(c.refresh, 600))
      assert.equal(180, refresh.interval_for(c.refresh, 1800))
      assert.equal(267840, refresh.interval_for(c.refresh, 31 * 86400))
      -- An explicit interval keeps its meaning, at most half the idle timeout.
      local explicit = conf { refresh = { interval = 60 } }
      assert.equal(60, refresh.interval_for(explicit.refresh, 31 * 86400))
      assert.equal(1, refresh.interval_for(explicit.refresh, 2))
      assert.equal(dict, c.refresh.dict)
    end)

    it("is off with refresh = false: nginx then writes nothing", function()
      assert.is_nil(conf({ refresh = false }).refresh)
    end)

    it("takes a dict of its own and an interval given as text", function()
      stub.shared.own = stub.new_dict()
      local c = conf { refresh = { dict = "own", interval = "0.5" } }
      assert.equal(stub.shared.own, c.refresh.dict)
      assert.equal(0.5, c.refresh.interval)
      stub.shared.own = nil
    end)

    for _, case in ipairs {
      { "a string", { refresh = "yes" }, 'option "refresh" must be a table, or false' },
      { "true", { refresh = true }, 'option "refresh" must be a table, or false' },
      { "a negative interval", { refresh = { interval = -1 } },
        'option "refresh.interval" must be a number of seconds' },
      { "a zero interval", { refresh = { interval = 0 } }, 'option "refresh.interval"' },
      { "an interval that is not a number", { refresh = { interval = "soon" } },
        'option "refresh.interval"' },
      { "a NaN interval", { refresh = { interval = 0 / 0 } }, 'option "refresh.interval"' },
      { "an interval over a day", { refresh = { interval = 86401 } }, 'option "refresh.interval"' },
      { "a dict that does not exist", { refresh = { dict = "nope" } },
        'option "refresh.dict" must name a lua_shared_dict' },
      { "an empty dict name", { refresh = { dict = "" } },
        'option "refresh.dict" must be a non-empty string' },
      { "an unknown key (a typo)", { refresh = { intervall = 5 } },
        'option "refresh.intervall" is unknown' },
    } do
      it("refuses " .. case[1] .. ", naming the option", function()
        local ok, err = config.new(case[2])
        assert.is_nil(ok)
        assert.truthy(err:find(case[3], 1, true), err)
      end)
    end
  end)
end)

describe("the Redis scripts the rock loads", function()
  local function read(path)
    local f = assert(io.open(path, "rb"))
    local text = f:read("*a")
    f:close()
    return text
  end

  it("come whole, their `-- #include` snippets expanded, and the rockspec "
     .. "ships each file they are made of", function()
    local stub = require "ngx_stub"
    local restore = stub.install {}
    local refresh = require "resty.shared_session.refresh"
    restore()
    local rockspec = read(assert(io.popen("ls resty-shared-session-*.rockspec"))
                          :read("*l"))
    for _, name in ipairs { "refresh", "index" } do
      local text = read("lib/resty/shared_session/scripts/" .. name .. ".lua")
      assert.truthy(rockspec:find('["resty.shared_session.scripts.' .. name
                                  .. '"]', 1, true))
      for lib in text:gmatch("%-%- #include (lib%-[a-z0-9%-]+)%.lua") do
        assert.truthy(rockspec:find('["resty.shared_session.scripts.' .. lib
                                    .. '"]', 1, true), lib)
      end
    end
    assert.is_nil(("\n" .. refresh.SCRIPT):find("\n%-%- #include "))
    assert.truthy(refresh.SCRIPT:find("local function compact_session", 1,
                                      true))
    assert.equal(read("lib/resty/shared_session/scripts/index.lua"),
                 refresh.INDEX_SCRIPT)
  end)
end)
