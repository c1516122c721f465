-- resty.shared_session.subscriber: the revocation subscriber (PROTOCOL.md
-- section 7) driven outside nginx: its timer runs at once, its cosocket is a
-- fake_socket replaying what Redis would send, its clock is the stub's. The
-- real thing, against redis-server, is tested in t/decision-cache.spec.ts.
local fake_socket = require "fake_socket"

local SID = "3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f"
local CHANNEL = "app:invalidate"

local function bulk(s)
  return "$" .. #s .. "\r\n" .. s .. "\r\n"
end

local SUBSCRIBED = "*3\r\n" .. bulk("subscribe") .. bulk(CHANNEL) .. ":1\r\n"
local PONG = "+PONG\r\n"

local function notice(payload)
  return "*3\r\n" .. bulk("message") .. bulk(CHANNEL) .. bulk(payload)
end

describe("resty.shared_session.subscriber", function()
  local stub, restore, config, subscriber, resp, decisions, metrics
  local process

  setup(function()
    stub = require "ngx_stub"
    restore = stub.install {
      ["resty.redis"] = false, ["nginx.redis"] = false,
      ["resty.redis.sentinel"] = false, ["nginx.redis.sentinel"] = false,
    }
    process = stub.process
    stub.shared.shared_session = stub.new_dict()
    config = require "resty.shared_session.config"
    subscriber = require "resty.shared_session.subscriber"
    resp = require "resty.shared_session.resp"
    decisions = require "resty.shared_session.decisions"
    metrics = require "resty.shared_session.metrics"
  end)

  teardown(function()
    stub.shared.shared_session = nil
    restore()
  end)

  local function configure(opts)
    opts = opts or {}
    opts.key_prefix = opts.key_prefix or "app"
    opts.decision_cache = opts.decision_cache or { dict = "shared_session" }
    return assert(config.new(opts))
  end

  describe("start", function()
    it("is nil and an error without a decision cache", function()
      local logged = #stub.logs
      local ok, err = subscriber.start(assert(config.new {}))
      assert.is_nil(ok)
      assert.equal("no decision_cache configured", err)
      assert.same({ nil, "no decision_cache configured" }, { subscriber.start(nil) })
      assert.matches("^" .. stub.WARN .. " shared_session: start_subscriber%(%) without",
                     stub.log_lines(logged)[1])
    end)

    it("is false outside worker 0", function()
      local conf = configure()
      stub.process.worker_id = 1
      local ok = subscriber.start(conf)
      stub.process.worker_id = 0
      assert.is_false(ok)
    end)

    it("is nil and an error when the timer cannot start", function()
      local logged = #stub.logs
      local ok, err = subscriber.start(configure())
      assert.is_nil(ok)
      assert.matches("^timer: ", err)
      assert.same({ stub.ERR .. " shared_session: revocation subscriber not started:"
                    .. " no timers outside nginx" }, stub.log_lines(logged))
    end)
  end)

  describe("the subscription", function()
    local conf, dict, events, spawned
    local presend     -- PINGs the PINGs' thread is taken to have sent

    -- What the subscriber does to the dict, in order: "set e", "replace s:<sid>" ...
    local function spy(d)
      for _, method in ipairs { "set", "replace", "delete" } do
        local original = d[method]
        d[method] = function(self, key, ...)
          events[#events + 1] = method .. " " .. key
          return original(self, key, ...)
        end
      end
      return d
    end

    -- The epoch values the subscriber writes, in order.
    local function record_epochs()
      local epochs = {}
      local set = dict.set
      dict.set = function(self, key, value, ...)
        if key == decisions.EPOCH_KEY then
          epochs[#epochs + 1] = value
        end
        return set(self, key, value, ...)
      end
      return epochs
    end

    before_each(function()
      events, spawned = {}, {}
      stub.shared.shared_session = spy(stub.new_dict())
      conf = configure()
      dict = conf.decision_cache.dict
    end)

    -- Starts the subscriber with a timer that runs at once; tcp() gives out
    -- `sockets` in turn, and the worker exits when the last one has nothing
    -- more to read.
    local function run(sockets)
      local n = 0
      if #sockets > 0 then
        sockets[#sockets].on_eof = function()
          process.exiting = true
        end
      end
      process.tcp = function()
        n = n + 1
        if not sockets[n] then
          process.exiting = true
          error("no more sockets in this test")
        end
        return sockets[n]
      end
      process.timer = function(_, fn, ...)
        fn(false, ...)
        return true
      end
      process.spawn = function(fn, ...)
        -- (fn, dc, r, sub, ...): the PINGs' thread first, then the others.
        local sub = select(3, ...)
        if presend and #spawned == 0 then
          for i = 1, #sub.sent do
            sub.sent[i] = presend
          end
        end
        spawned[#spawned + 1] = { fn = fn, sock = sub.socks }
        return "pinger"
      end
      process.kill = function()
        return true
      end
      local logged = #stub.logs
      local ok, err = subscriber.start(conf)
      process.tcp, process.timer, process.spawn, process.kill = nil, nil, nil, nil
      process.exiting = false
      return ok, err, stub.log_lines(logged), n
    end

    it("subscribes to <prefix>:invalidate and keeps the epoch while Redis answers", function()
      local sock = fake_socket.new(SUBSCRIBED .. PONG .. PONG)
      local ok, _, logs, used = run { sock }
      assert.is_true(ok)
      assert.equal(1, used)
      assert.equal("127.0.0.1:6379", sock.address)
      assert.same({ pool = "shared_session:subscriber:127.0.0.1:6379" }, sock.options)
      -- (A silence shorter than 5 s is not the end: see "a silence" below.)
      assert.same({ { 200, 500, 500 }, { 200, 500, 5000 } }, sock.timeouts)
      assert.same({ resp.command("SUBSCRIBE", CHANNEL) }, sock.sent)
      -- A new epoch and count at SUBSCRIBE (and when, for health()),
      -- refreshed by each reply, gone at the end.
      assert.same({ "set e", "set r", "set subscribed_at", "set e", "set r", "set e", "set r",
                    "delete r", "delete e" }, events)
      assert.is_nil(dict:get(decisions.EPOCH_KEY))
      assert.is_nil(dict:get(decisions.COUNT_KEY))
      assert.is_true(sock.closed)
      assert.equal(1, #spawned)
      assert.same({ sock }, spawned[1].sock)
      assert.same({ stub.NOTICE .. " shared_session: revocation subscriber up on "
                    .. CHANNEL .. "; decision cache in use" }, logs)
    end)

    it("keeps one epoch through PONGs and notices, and a new count at each notice", function()
      local epochs = record_epochs()
      local counts = {}
      local set = dict.set
      dict.set = function(self, key, value, ...)
        if key == decisions.COUNT_KEY and counts[#counts] ~= value then
          counts[#counts + 1] = value
        end
        return set(self, key, value, ...)
      end
      dict:set("s:" .. SID, "old token", 1)
      run { fake_socket.new(SUBSCRIBED .. PONG .. notice(SID) .. PONG) }
      assert.equal(4, #epochs)
      for i = 2, #epochs do
        assert.equal(epochs[1], epochs[i])
      end
      -- The notice replaced the session's token, then the count: its
      -- decisions stop counting, in the dict and in every worker.
      assert.is_string(dict:get("s:" .. SID))
      assert.are_not.equal("old token", dict:get("s:" .. SID))
      assert.equal(2, #counts)
      assert.is_true(counts[2] > counts[1])
      local at = {}
      for i, e in ipairs(events) do
        at[e] = at[e] or i
      end
      assert.is_true(at["replace s:" .. SID] < #events - 3)
      assert.equal("set r", events[at["replace s:" .. SID] + 1])
    end)

    it("a new count when a !generation notice changes a kept generation (workers' entries"
       .. " carry it), not when it repeats it", function()
      local counts = {}
      local set = dict.set
      dict.set = function(self, key, value, ...)
        if key == decisions.COUNT_KEY and counts[#counts] ~= value then
          counts[#counts + 1] = value
        end
        return set(self, key, value, ...)
      end
      run { fake_socket.new(SUBSCRIBED .. notice("!generation 4 g1") .. PONG
                            .. notice("!generation 4 g1") .. PONG) }
      -- The subscription's count, then one for the changed generation only.
      assert.equal(2, #counts)
      assert.is_true(counts[2] > counts[1])
    end)

    it("on one Redis: a notice may lower the mark in the v1 layout, only raise it in the others",
       function()
      local function kept(layout)
        conf = configure { key_layout = layout }
        dict = conf.decision_cache.dict
        local marks = notice("!not-before 5") .. notice("!not-before 0")
        run { fake_socket.new(SUBSCRIBED .. marks .. PONG) }
        for _, e in ipairs(events) do
          if e:find("^set m:") then return dict:get(e:sub(5)) end
        end
      end
      assert.equal(0, kept("v1"))          -- section 13.2: an operator lifted it
      events = {}
      assert.equal(5, kept("compact"))     -- sections 14.3 and 15: only forward
      events = {}
      assert.equal(5, kept("cluster"))
    end)

    -- A connection reading `parts` in turn; a number is a silence of that
    -- many seconds before the next part (the stub's clock moves on).
    local function silent(parts)
      local input, at = "", {}
      for _, part in ipairs(parts) do
        if type(part) == "number" then
          at[#input + 1] = part
        else
          input = input .. part
        end
      end
      local sock = fake_socket.new(input)
      local receive = sock.receive
      sock.receive = function(self, ...)
        if at[self.pos] then
          stub.sleep(at[self.pos])
          at[self.pos] = nil
        end
        return receive(self, ...)
      end
      return sock
    end

    -- run(), with `n` PINGs taken as sent on each connection (answered or
    -- in flight) before it is read.
    local function pings_sent(n)
      return function(sockets)
        presend = n
        local ok, err, logs, used = run(sockets)
        presend = nil
        return ok, err, logs, used
      end
    end

    it("a silence shorter than the heartbeat changes nothing: a notice renews the epoch", function()
      local epochs = record_epochs()
      local _, _, logs = run { silent { SUBSCRIBED, PONG, 0.9, notice(SID), PONG } }
      assert.same({ "set e", "set r", "set subscribed_at", "set e", "set r",
                    "replace s:" .. SID, "set r", "set e", "set r", "set e", "set r",
                    "delete r", "delete e" }, events)
      for i = 2, #epochs do
        assert.equal(epochs[1], epochs[i])
      end
      assert.equal(1, #logs)      -- up, nothing else
    end)

    it("a longer silence lapses the epoch; only a PONG to a later PING publishes it again"
       .. " (the same epoch), after the notices read before it", function()
      stub.shared.sub_metrics = stub.new_dict()     -- (and counted)
      conf = configure { metrics = { dict = "sub_metrics" } }
      assert.equal(dict, conf.decision_cache.dict)
      local epochs = record_epochs()
      local counts = {}
      local set = dict.set
      dict.set = function(self, key, value, ...)
        if key == decisions.COUNT_KEY then
          counts[#counts + 1] = value
        end
        return set(self, key, value, ...)
      end
      dict:set("s:" .. SID, "old token", 60)
      events = {}
      local seen = {}     -- the epoch in the dict when each reply is read
      local sock = silent { SUBSCRIBED, PONG, 1.5, notice(SID), PONG, PONG, PONG }
      local receive = sock.receive
      sock.receive = function(self, pattern)
        if pattern == nil or pattern == "*l" then
          local line = receive(self, pattern)
          if line and line:find("^[*+]") then
            seen[#seen + 1] = dict:get(decisions.EPOCH_KEY) or false
          end
          return line
        end
        return receive(self, pattern)
      end
      -- Two PINGs sent when the silence began: its first PONG answered the
      -- first, the second PONG after it answers the second (sent before the
      -- lapse was seen): only the third publishes the epoch again.
      local _, _, logs = pings_sent(2) { sock }
      assert.same({ "set e", "set r", "set subscribed_at", "set e", "set r",
                    "replace s:" .. SID, "set e", "set r", "set e", "set r",
                    "delete r", "delete e" }, events)
      -- The notice changed the token at once, the count (unpublished) too.
      assert.are_not.equal("old token", dict:get("s:" .. SID))
      local e = epochs[1]
      assert.same({ e, e, e, e }, epochs)
      -- Read: SUBSCRIBE's reply (no epoch yet), the first PONG (up), then
      -- after 1.5 s the notice and the old PONG (lapsed), the later PONG
      -- (lapsed when read, published by it), and the last (up).
      assert.same({ false, e, false, false, false, e }, seen)
      assert.is_true(counts[3] > counts[2])
      assert.equal(3, #logs)      -- up, lapsed, back: no "down"
      assert.equal(1, conf.metrics.counts[metrics.LAPSES])
      assert.matches("^" .. stub.WARN .. " shared_session: revocation subscriber: no reply"
                     .. " from Redis for 1[45]%d%d ms; decision cache bypassed until it"
                     .. " answers$", logs[2])
      assert.matches("^" .. stub.NOTICE .. " shared_session: revocation subscriber: Redis"
                     .. " answers again after 1[45]%d%d ms; decision cache in use$", logs[3])
    end)

    it("a control notice read while lapsed is kept under the epoch it comes back with", function()
      local _, _, logs = pings_sent(1) {
        silent { SUBSCRIBED, PONG, 1.5, notice("!not-before 7"), PONG, PONG },
      }
      local marks = {}
      for _, ev in ipairs(events) do
        if ev:find("^set m:") then marks[#marks + 1] = ev:sub(5) end
      end
      assert.equal(1, #marks)
      assert.equal(7, dict:get(marks[1]))
      assert.matches("answers again", logs[3])
    end)

    it("drops every decision (a new epoch) for a notice that is not a session id", function()
      local epochs = record_epochs()
      local _, _, logs = run { fake_socket.new(SUBSCRIBED .. notice("not a sid") .. PONG) }
      assert.equal(4, #epochs)
      assert.are_not.equal(epochs[1], epochs[2])
      assert.equal(epochs[2], epochs[3])
      assert.equal(epochs[2], epochs[4])
      assert.same(stub.WARN .. " shared_session: notice on " .. CHANNEL .. " is not a"
                  .. " session id; every cached decision dropped", logs[2])
    end)

    it("drops every decision for a notice it could not apply", function()
      local epochs = record_epochs()
      dict.replace = function()
        error("dict broken")
      end
      run { fake_socket.new(SUBSCRIBED .. notice(SID)) }
      assert.equal(3, #epochs)
      assert.are_not.equal(epochs[1], epochs[2])
      assert.equal(epochs[2], epochs[3])
    end)

    it("ends the subscription, cache bypassed, on an error of its reader", function()
      local sets = 0
      local set = dict.set
      dict.set = function(self, key, ...)
        if key == decisions.EPOCH_KEY then
          sets = sets + 1
          if sets == 2 then
            error("dict broken")
          end
        end
        return set(self, key, ...)
      end
      local _, _, logs = run { fake_socket.new(SUBSCRIBED .. PONG .. PONG) }
      assert.matches("down %(error: .*dict broken%)", logs[2])
      assert.is_nil(dict:get(decisions.EPOCH_KEY))
    end)

    it("reconnects with a growing backoff, and logs only the changes", function()
      local refused = fake_socket.new("")
      refused.connect_err = "connection refused"
      local started = stub.now()
      local _, _, logs, used = run {
        fake_socket.new(SUBSCRIBED),              -- up, then closed
        refused,                                  -- still down: not logged again
        fake_socket.new("-ERR busy\r\n"),         -- SUBSCRIBE refused
        fake_socket.new(SUBSCRIBED .. PONG),      -- up again, then the worker exits
      }
      assert.equal(4, used)
      assert.same({
        stub.NOTICE .. " shared_session: revocation subscriber up on " .. CHANNEL
          .. "; decision cache in use",
        stub.ERR .. " shared_session: revocation subscriber down (closed); decision"
          .. " cache bypassed until it is back",
        stub.NOTICE .. " shared_session: revocation subscriber up on " .. CHANNEL
          .. "; decision cache in use",
      }, logs)
      -- 0.1 s after the first failure, 0.2 after the second, 0.4 after the third.
      assert.near(0.7, stub.now() - started, 1e-6)
      assert.is_nil(dict:get(decisions.EPOCH_KEY))
    end)

    it("sends AUTH first when redis.password is set, and gives up on a refusal", function()
      conf = configure { redis = { password = "pw" } }
      local refused = fake_socket.new("-WRONGPASS invalid password\r\n")
      local accepted = fake_socket.new("+OK\r\n" .. SUBSCRIBED)
      local _, _, logs = run { refused, accepted }
      assert.same({ resp.command("AUTH", "pw") }, refused.sent)
      assert.is_true(refused.closed)
      assert.matches("down %(auth: WRONGPASS invalid password%)", logs[1])
      assert.same({ resp.command("AUTH", "pw"), resp.command("SUBSCRIBE", CHANNEL) },
                  accepted.sent)
      for _, line in ipairs(logs) do
        assert.is_nil(line:find("pw\r", 1, true))
      end
    end)

    it("bypasses the cache when Redis answers with an error", function()
      local _, _, logs = run {
        fake_socket.new(SUBSCRIBED .. "-ERR oops\r\n"),
        fake_socket.new(SUBSCRIBED),
      }
      assert.matches("down %(redis error: ERR oops%)", logs[2])
      assert.same({ "set e", "set r", "set subscribed_at", "delete r", "delete e",
                    "set e", "set r", "set subscribed_at", "delete r", "delete e" }, events)
    end)

    it("survives an error of its own, with the cache bypassed", function()
      dict:set(decisions.EPOCH_KEY, "stale")
      events = {}
      local _, _, logs = run {}      -- tcp() raises at once
      assert.same({ "delete r", "delete e" }, events)
      assert.matches("down %(error: .*no more sockets in this test%)", logs[1])
    end)

    describe("on a cluster", function()
      local cluster = require "resty.shared_session.cluster"

      -- A configuration whose worker already has a fresh slot map of three
      -- primaries (no CLUSTER SLOTS is due).
      local function cluster_conf()
        local c = configure {
          key_layout = "cluster",
          redis = { cluster = { nodes = { { host = "h", port = 1 } } } },
        }
        local cs = c.redis.cluster_state
        cs.map = assert(cluster.map_from_slots({
          { 0, 5000, { "h", 1 } }, { 5001, 10000, { "h", 2 } }, { 10001, 16383, { "h", 3 } },
        }, function(host, port) return { host = host, port = port } end))
        cs.refreshed = stub.now()
        return c
      end

      it("subscribes on every primary before the epoch opens, one reader each", function()
        conf = cluster_conf()
        local socks = { fake_socket.new(SUBSCRIBED .. PONG), fake_socket.new(SUBSCRIBED),
                        fake_socket.new(SUBSCRIBED) }
        socks[1].on_eof = function() process.exiting = true end
        local _, _, logs, used = run(socks)
        assert.equal(3, used)
        for i, sock in ipairs(socks) do
          assert.equal("h:" .. i, sock.address)
          assert.same({ pool = "shared_session:subscriber:h:" .. i }, sock.options)
          assert.same({ resp.command("SUBSCRIBE", CHANNEL) }, sock.sent)
          assert.is_true(sock.closed)
        end
        -- The pinger (every connection), the map's watcher, two readers.
        assert.equal(4, #spawned)
        assert.same(socks, spawned[1].sock)
        assert.equal(events[1], "set e")
        assert.same({ stub.NOTICE .. " shared_session: revocation subscriber up on " .. CHANNEL
                      .. " at every primary (h:1,h:2,h:3); decision cache in use" }, logs)
      end)

      it("stays down while any primary cannot be subscribed to", function()
        conf = cluster_conf()
        local refused = fake_socket.new("")
        refused.connect_err = "connection refused"
        local _, _, logs = run { fake_socket.new(SUBSCRIBED), refused }
        assert.is_nil(dict:get(decisions.EPOCH_KEY))
        assert.same({ "delete r", "delete e" }, events)   -- (the spec's end, no more sockets)
        assert.same({ stub.ERR .. " shared_session: revocation subscriber down (h:2: connect:"
                      .. " connection refused); decision cache bypassed until it is back" }, logs)
      end)

      it("after a silence, comes back only once every primary's connection answered a"
         .. " later PING", function()
        conf = cluster_conf()
        dict = conf.decision_cache.dict
        -- Only the first connection's reader runs here (the others are light
        -- threads the spec does not run): its later PONGs are not enough.
        local first = silent { SUBSCRIBED, PONG, 1.5, PONG, PONG, PONG }
        first.on_eof = function() process.exiting = true end
        local _, _, logs = pings_sent(1) {
          first, fake_socket.new(SUBSCRIBED), fake_socket.new(SUBSCRIBED),
        }
        assert.same({ "set e", "set r", "set subscribed_at", "set e", "set r",
                      "delete r", "delete e" }, events)
        assert.equal(2, #logs)
        assert.matches("no reply from Redis for 1500 ms", logs[2], 1, true)
      end)

      it("answers an !ack once, at its last copy; a mark only raises the kept one", function()
        -- The acknowledgements it tried to send (no Redis here: each one is a warning).
        local function acks(copies)
          conf = cluster_conf()
          events = {}
          local input = SUBSCRIBED .. notice("!ack a1") .. notice("!not-before 5")
                        .. notice("!not-before 3")
          for _ = 2, copies do
            input = input .. notice("!ack a1")
          end
          local sock = fake_socket.new(input .. PONG)
          sock.on_eof = function() process.exiting = true end
          local _, _, logs = run { sock, fake_socket.new(SUBSCRIBED), fake_socket.new(SUBSCRIBED) }
          local n = 0
          for _, line in ipairs(logs) do
            n = n + (line:find("acknowledgement not sent", 1, true) and 1 or 0)
          end
          return n
        end
        assert.equal(0, acks(2))
        assert.equal(1, acks(3))
        assert.equal(1, acks(4))    -- (a fourth copy starts a count of its own)
        -- PROTOCOL.md section 14.3: 5 is kept; the later, older 3 is not set.
        local marks = {}
        for _, e in ipairs(events) do
          if e:find("^set m:") then marks[#marks + 1] = e end
        end
        assert.equal(1, #marks)
        assert.equal(5, dict:get(marks[1]:sub(5)))
      end)
    end)

    it("PINGs until the socket fails, and UNSUBSCRIBEs when the worker exits", function()
      run { fake_socket.new(SUBSCRIBED) }
      local fn = spawned[1].fn
      local dc = conf.decision_cache
      local function ping(socks)
        local sub = { socks = socks, sent = { 0 }, live = decisions.open(dc, 1),
                      replied_at = stub.now() }
        fn(dc, conf.redis, sub)
        decisions.close(dc)
        return sub
      end

      local sock = fake_socket.new("")
      local sends = 0
      local send = sock.send
      sock.send = function(self, data)
        sends = sends + 1
        if sends == 3 then
          return nil, "broken pipe"
        end
        return send(self, data)
      end
      local started = stub.now()
      local sub = ping({ sock })
      assert.same({ resp.command("PING"), resp.command("PING") }, sock.sent)
      assert.same({ 3 }, sub.sent)    -- (the third counted before it failed)
      assert.near(0.75, stub.now() - started, 1e-6)

      sock = fake_socket.new("")
      process.exiting = true
      ping({ sock })
      process.exiting = false
      assert.same({ resp.command("UNSUBSCRIBE") }, sock.sent)
    end)
  end)
end)
