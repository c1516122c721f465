-- resty.shared_session.decisions: the decision cache's logic outside nginx,
-- on the in-memory dict of ngx_stub: the key format, what a revocation or a
-- new epoch invalidates, and a randomized check that no sequence of requests,
-- revocations, epochs and evictions ever yields a hit that should not be.
-- Its options are in config_spec.lua, the subscriber in subscriber_spec.lua;
-- the real lua_shared_dict is tested under t/.

describe("resty.shared_session.decisions", function()
  local stub, restore, decisions

  local SID = "3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f"
  local SIG = ("s"):rep(27)

  setup(function()
    stub = require "ngx_stub"
    restore = stub.install()
    decisions = require "resty.shared_session.decisions"
  end)

  teardown(function()
    restore()
  end)

  describe("keys", function()
    it("puts the session id first, so no two (sid, group) pairs share a key", function()
      -- A sid never holds ":" (PROTOCOL.md section 1); group ids may hold anything.
      local sids = { ("a"):rep(16), ("a"):rep(17), ("a"):rep(16) .. "-b", SID }
      local groups = { "g", ":g", "g:", "a:g", "", "b:" .. ("a"):rep(16), "x y", 7, "7" }
      local seen = {}
      for _, sid in ipairs(sids) do
        for _, group in ipairs(groups) do
          local key = decisions.key(sid, group)
          local pair = sid .. "\0" .. tostring(group)
          if seen[key] and seen[key] ~= pair then
            -- Only the number 7 and the string "7" may meet: Redis sees them as one.
            assert.equal(tostring(seen[key]:match("%z(.*)$")), tostring(group))
          end
          seen[key] = pair
          assert.equal(sid, key:match("^d:([^:]*):"))
        end
      end
    end)
  end)

  describe("fresh_token", function()
    it("never gives the same token twice, even within a millisecond", function()
      local seen = {}
      for _ = 1, 1000 do
        local token = decisions.fresh_token()
        assert.is_nil(seen[token])
        assert.is_nil(token:find("[ :]"))
        seen[token] = true
      end
    end)

    it("differs between workers (by pid)", function()
      local a = decisions.fresh_token()
      stub.process.pid = stub.process.pid + 1
      local b = decisions.fresh_token()
      stub.process.pid = stub.process.pid - 1
      assert.are_not.equal(a:match("^[^.]*"), b:match("^[^.]*"))
    end)
  end)

  describe("decisions", function()
    local dc, live

    local function value_of(sid, sig)
      return sid .. "." .. sig
    end

    before_each(function()
      dc = { dict = stub.new_dict(), ttl = 1, config_id = "c1",
             worker = decisions.new_worker_cache(100) }
      live = decisions.open(dc, 1000)
    end)

    -- After the HMAC: a hit, or the ticket of the query to send.
    local function ask(sid, group, sig)
      sid, sig = sid or SID, sig or SIG
      return decisions.cached(dc, value_of(sid, sig), sid, sig, group or "g1")
    end

    -- This worker's answer, before the cookie is parsed.
    local function known(sid, group, sig)
      return decisions.lookup(dc, value_of(sid or SID, sig or SIG), group or "g1")
    end

    local function remember(ticket, allowed)
      decisions.store(dc, ticket, allowed ~= false)
    end

    it("are reused once stored", function()
      local hit, ticket = ask()
      assert.is_nil(hit)
      assert.is_table(ticket)
      assert.is_nil(known())
      remember(ticket)
      assert.is_true(known())
      assert.is_true(ask())
      assert.is_true(ask())
    end)

    it("are per group and per signature", function()
      local _, ticket = ask()
      remember(ticket)
      assert.is_nil(ask(SID, "g2"))
      assert.is_nil(ask(SID, "g1", ("t"):rep(27)))
      assert.is_nil(ask(("b"):rep(36), "g1"))
      assert.is_nil(known(SID, "g2"))
      assert.is_nil(known(SID, "g1", ("t"):rep(27)))
      assert.is_nil(known(("b"):rep(36), "g1"))
    end)

    it("are bypassed, and nothing is stored, without a subscription", function()
      local _, ticket = ask()
      remember(ticket)
      decisions.close(dc)
      assert.is_nil(known())
      local hit, no_ticket = ask()
      assert.is_nil(hit)
      assert.is_nil(no_ticket)
    end)

    it("are dropped by a new subscription", function()
      local _, ticket = ask()
      remember(ticket)
      decisions.close(dc)
      live = decisions.open(dc, 1000)
      assert.is_nil(known())
      assert.is_nil(ask())
    end)

    it("are all dropped by a notice that is not understood", function()
      local _, ticket = ask()
      remember(ticket)
      decisions.forget_all(dc, live)
      assert.is_nil(known())
      assert.is_nil(ask())
    end)

    it("are dropped by a revocation, for every group of the session", function()
      local other = ("b"):rep(36)
      for _, g in ipairs { "g1", "g2" } do
        local _, ticket = ask(SID, g)
        remember(ticket)
      end
      local _, ticket = ask(other, "g1")
      remember(ticket)
      decisions.forget(dc, SID, live)
      assert.is_nil(known(SID, "g1"))
      assert.is_nil(known(SID, "g2"))
      assert.is_nil(ask(SID, "g1"))
      assert.is_nil(ask(SID, "g2"))
      -- Any notice moves the count, so this worker forgets the other session
      -- too; the dict still has it, and a hit there brings it back.
      assert.is_nil(known(other, "g1"))
      assert.is_true(decisions.hit(dc, value_of(other, SIG), other, SIG, "g1"))
      assert.is_true(known(other, "g1"))
    end)

    it("made before a revocation and stored after it do not count", function()
      local _, ticket = ask()          -- query sent...
      decisions.forget(dc, SID, live)  -- ...the notice arrives...
      remember(ticket)                 -- ...then the (stale) answer
      assert.is_nil(known())
      assert.is_nil(ask())
    end)

    it("made after a revocation count", function()
      decisions.forget(dc, SID, live)
      local _, ticket = ask()
      remember(ticket)
      assert.is_true(known())
      assert.is_true(ask())
    end)

    it("stop counting when any of their keys is evicted", function()
      for _, key in ipairs { decisions.EPOCH_KEY, "s:" .. SID, "d:" .. SID .. ":g1" } do
        decisions.forget_all(dc, live)
        local _, ticket = ask()
        remember(ticket)
        assert.is_true(ask())
        dc.dict:evict(key)
        assert.is_nil(ask(), key)
        decisions.heartbeat(dc, live)
      end
      local _, ticket = ask()
      remember(ticket)
      assert.is_true(known())
      dc.dict:evict(decisions.COUNT_KEY)
      assert.is_nil(known())
    end)

    it("live at most ttl after their query was sent", function()
      local _, ticket = ask()
      stub.sleep(0.4)               -- the Redis round trip
      remember(ticket)
      stub.sleep(0.59)
      assert.is_true(known())
      assert.is_true(ask())
      stub.sleep(0.02)
      assert.is_nil(known())
      assert.is_nil(ask())
    end)

    it("count only under the configuration they were made under", function()
      local _, ticket = ask()
      remember(ticket)
      assert.is_true(decisions.hit(dc, value_of(SID, SIG), SID, SIG, "g1"))
      dc.config_id = "c2"     -- configure() again, e.g. a reload that drops a secret
      assert.is_false(decisions.hit(dc, value_of(SID, SIG), SID, SIG, "g1"))
      assert.is_nil(ask())
    end)

    it("are looked up before the HMAC without writing to the dict", function()
      local before = #dc.dict:keys()
      local forged = ("f"):rep(20)
      assert.is_nil(known(forged))
      assert.is_false(decisions.hit(dc, value_of(forged, SIG), forged, SIG, "g1"))
      assert.are.equal(before, #dc.dict:keys())
      assert.are.equal(0, dc.worker:count())
    end)

    it("never outlive the session's expiry that the ticket carries", function()
      dc.ttl = 300
      local _, ticket = ask()
      ticket.expires_at = stub.now() + 2      -- the session's PTTL: 2 s
      remember(ticket)
      assert.is_true(known())
      assert.is_true(ask())
      assert.is_true(dc.dict:ttl("d:" .. SID .. ":g1") <= 2)
      stub.sleep(1.99)
      assert.is_true(known())
      stub.sleep(0.02)
      assert.is_nil(known())
      assert.is_nil(ask())
    end)

    it("end at ttl when the session lives longer, and are not stored past its expiry", function()
      local _, ticket = ask()
      ticket.expires_at = stub.now() + 3600
      remember(ticket)
      stub.sleep(1.01)
      assert.is_nil(known())
      _, ticket = ask()
      ticket.expires_at = stub.now() - 0.5    -- expired while the query was in flight
      remember(ticket)
      assert.is_nil(known())
      assert.is_nil(dc.dict:get("d:" .. SID .. ":g1"))
    end)

    it("made together end spread between spread * ttl and ttl (all_writers_publish)", function()
      -- A restart or a warm-up makes many decisions in one second: they
      -- must not all end, and ask Redis, in one second 300 s later.
      dc.ttl, dc.spread = 300, decisions.SPREAD
      local seconds, low, high = {}, math.huge, 0
      local n = 200
      for i = 1, n do
        local sid = ("%032x"):format(i)
        local _, ticket = ask(sid)
        remember(ticket)
        local left = dc.dict:ttl("d:" .. sid .. ":g1")
        assert.is_true(known(sid))
        low, high = math.min(low, left), math.max(high, left)
        seconds[math.floor(left)] = true
      end
      local distinct = 0
      for _ in pairs(seconds) do
        distinct = distinct + 1
      end
      assert.is_true(low >= 150 - 0.01, "a decision shorter than spread * ttl")
      assert.is_true(high <= 300, "a decision longer than ttl")
      -- 200 uniform draws over 150 s: far more than a handful of seconds.
      assert.is_true(distinct >= 50, distinct .. " distinct end seconds")
      assert.is_true(high - low >= 100, "spread over " .. (high - low) .. " s")
      -- The session's expiry still bounds each of them.
      local _, ticket = ask(("%032x"):format(n + 1))
      ticket.expires_at = stub.now() + 2
      remember(ticket)
      assert.is_true(dc.dict:ttl("d:" .. ("%032x"):format(n + 1) .. ":g1") <= 2)
    end)

    it("live exactly ttl without a spread (writers that do not publish)", function()
      dc.ttl = 300
      for i = 1, 20 do
        local sid = ("%032x"):format(i)
        local _, ticket = ask(sid)
        remember(ticket)
        assert.is_true(dc.dict:ttl("d:" .. sid .. ":g1") > 299.9)
      end
    end)

    it("that are refusals replace an allow kept in the dict, for every worker", function()
      dc.ttl = 300
      local _, ticket = ask()
      remember(ticket)
      -- Another worker (no entry of its own) asks Redis, which now refuses.
      local other = { dict = dc.dict, ttl = 300, config_id = "c1",
                      worker = decisions.new_worker_cache(100) }
      assert.is_true((decisions.cached(other, value_of(SID, SIG), SID, SIG, "g1")))
      local _, refused = decisions.cached(other, value_of(SID, SIG), SID, SIG, "g2")
      refused.group_id = "g1"     -- (a query for g1 that missed, e.g. with no mark kept)
      decisions.store(other, refused, false)
      assert.is_nil(dc.dict:get("d:" .. SID .. ":g1"))
      local third = { dict = dc.dict, ttl = 300, config_id = "c1",
                      worker = decisions.new_worker_cache(100) }
      assert.is_false(decisions.hit(third, value_of(SID, SIG), SID, SIG, "g1"))
    end)

    describe("at the worker level with what they were made under (known)", function()
      local function fast(group, with_generation)
        return decisions.known(dc, value_of(SID, SIG), group or "g1", with_generation)
      end

      local function store_with_mark(mark, group, allowed, generation)
        -- (A decision still in the dict is a shared hit: remembered as it is.)
        local hit, ticket = decisions.cached(dc, value_of(SID, SIG), SID, SIG, group or "g1", mark,
                                             generation)
        if not hit then
          decisions.store(dc, ticket, allowed ~= false, mark, generation)
        end
      end

      it("answer with the mark and the generation they were made with, in one dict read", function()
        store_with_mark(0)
        local reads = 0
        local get = dc.dict.get
        dc.dict.get = function(self, k)
          reads = reads + 1
          return get(self, k)
        end
        local allowed, entry, mark = fast()
        assert.is_true(allowed)
        assert.are.equal(SID, decisions.entry_sid(entry))
        assert.are.equal(0, mark)
        assert.are.equal(1, reads)
        -- No generation kept with it: the worker level cannot answer alone.
        assert.is_nil(fast("g1", true))
        dc.dict.get = get
        store_with_mark(0, "g1", true, 7)
        dc.dict.get = function(self, k)
          reads = reads + 1
          return get(self, k)
        end
        reads = 0
        assert.same({ true, 0, 7 }, { (fast("g1", true)), select(3, fast("g1", true)) })
        assert.are.equal(2, reads)      -- one per call: the count
        dc.dict.get = get
        -- Used no longer than the dict keeps a generation (a change made
        -- behind nginx's back), and not after a changed one (the count).
        stub.sleep(60.1)
        assert.is_nil(fast("g1", true))
        store_with_mark(0, "g1", true, 7)
        assert.is_true((fast("g1", true)))
        decisions.generation_changed(dc, live)
        assert.is_nil(fast("g1", true))
      end)

      it("do not answer for a decision made without a known mark", function()
        store_with_mark(nil)
        assert.is_true(known())
        assert.is_nil(fast())
      end)

      it("stop at a revocation, a new epoch, and the mark's lifetime", function()
        store_with_mark(0)
        assert.is_true(fast())
        decisions.forget(dc, SID, live)
        assert.is_nil(fast())
        store_with_mark(0)
        assert.is_true(fast())
        decisions.forget_all(dc, live)
        assert.is_nil(fast())
        store_with_mark(0, "g1")
        dc.ttl = 300
        store_with_mark(0, "g2")
        stub.sleep(59.9)
        assert.is_true(fast("g2"))
        stub.sleep(0.2)
        assert.is_nil(fast("g2"))
      end)

      it("answer again once a shared hit has read the mark anew", function()
        dc.ttl = 300
        store_with_mark(0)
        stub.sleep(60.1)
        assert.is_nil(fast())
        assert.is_true(decisions.hit(dc, value_of(SID, SIG), SID, SIG, "g1", 0))
        assert.is_true(fast())
      end)

      it("stop as soon as the subscriber has seen the kept mark change", function()
        dc.ttl = 300
        local key = "m:" .. decisions.current_epoch(dc)
        store_with_mark(0)
        decisions.heartbeat(dc, live)
        assert.is_true(fast())
        -- control.lua applies `!not-before`, then the subscriber renews the epoch.
        dc.dict:set(key, 12345, 60)
        assert.is_true(fast())
        decisions.heartbeat(dc, live)
        assert.is_nil(fast())
        -- The same mark again: the count stays.
        store_with_mark(12345)
        decisions.heartbeat(dc, live)
        assert.is_true(fast())
        -- The kept mark expires: no new count, but no entry uses it longer
        -- than the dict kept it.
        stub.sleep(59.9)
        assert.is_true(fast())
        stub.sleep(0.2)
        local count = dc.dict:get("r")
        decisions.heartbeat(dc, live)
        assert.are.equal(count, dc.dict:get("r"))
        assert.is_nil(fast())
        -- Read again with the value it had (a miss kept it anew): the entry
        -- goes on, for as long as the dict keeps it, with no new count.
        dc.dict:set(key, 12345, 60)
        decisions.heartbeat(dc, live)
        assert.are.equal(count, dc.dict:get("r"))
        assert.is_true(fast())
        stub.sleep(59.9)
        assert.is_true(fast())
        -- Expired, then read again with another value: a new count.
        stub.sleep(0.2)
        decisions.heartbeat(dc, live)
        dc.dict:set(key, 23456, 60)
        assert.is_nil(fast())     -- (not the entry's mark: not used past its time)
        decisions.heartbeat(dc, live)
        assert.are_not.equal(count, dc.dict:get("r"))
        store_with_mark(23456)
        assert.is_true(fast())
        decisions.heartbeat(dc, live)
        assert.is_true(fast())
      end)

      it("keep refusals too", function()
        store_with_mark(0, "g2", false)
        assert.is_false((fast("g2")))
      end)
    end)

    it("are not stored when the answer came after ttl", function()
      local _, ticket = ask()
      stub.sleep(1.2)
      remember(ticket)
      assert.is_nil(dc.dict:get("d:" .. SID .. ":g1"))
      assert.is_nil(known())
    end)

    it("are stored as the README says: d:<sid>:<group> = <epoch> <token> <sig>", function()
      local _, ticket = ask()
      remember(ticket)
      local epoch = dc.dict:get(decisions.EPOCH_KEY)
      local token = dc.dict:get("s:" .. SID)
      assert.is_string(token)
      assert.equal("c1/" .. epoch .. " " .. token .. " " .. SIG,
                   dc.dict:get("d:" .. SID .. ":g1"))
      assert.equal("d:" .. SID .. ":g1", decisions.key(SID, "g1"))
    end)

    it("that are negative are kept in the worker only", function()
      local _, ticket = ask()
      local before = #dc.dict:keys()
      remember(ticket, false)
      assert.is_false(known())
      assert.are.equal(before, #dc.dict:keys())
      assert.is_nil(ask())
      -- A group added publishes a notice: the refusal goes.
      decisions.forget(dc, SID, live)
      assert.is_nil(known())
    end)

    it("of one cookie hold a bounded number of groups", function()
      for i = 1, decisions.GROUPS_PER_ENTRY + 1 do
        local _, ticket = ask(SID, "g" .. i)
        remember(ticket, false)
      end
      local kept = 0
      for i = 1, decisions.GROUPS_PER_ENTRY + 1 do
        if known(SID, "g" .. i) == false then
          kept = kept + 1
        end
      end
      assert.is_true(kept >= 1 and kept <= decisions.GROUPS_PER_ENTRY)
      assert.is_false(known(SID, "g" .. decisions.GROUPS_PER_ENTRY + 1))
    end)

    it("are kept in the worker only when it has a level", function()
      dc.worker = decisions.new_worker_cache(0)
      assert.is_nil(dc.worker)
      local _, ticket = ask()
      remember(ticket)
      assert.is_nil(known())
      assert.is_true(ask())
    end)

    it("give a session's token the decisions' ttl", function()
      ask()
      assert.is_string(dc.dict:get("s:" .. SID))
      stub.sleep(1.01)
      assert.is_nil(dc.dict:get("s:" .. SID))
    end)

    it("are not touched by a revocation of a session with nothing cached", function()
      decisions.forget(dc, SID, live)
      assert.is_nil(dc.dict:get("s:" .. SID))
    end)

    it("expire with the subscription's heartbeat unless it is renewed", function()
      live = decisions.open(dc, 0.5)
      local _, ticket = ask()
      remember(ticket)
      stub.sleep(0.4)
      decisions.heartbeat(dc, live)
      stub.sleep(0.4)
      assert.is_true(known())
      stub.sleep(0.2)
      assert.is_nil(known())
      assert.is_nil(ask())
    end)

    it("never reuse a revocation count, even in a new worker 0", function()
      local seen = {}
      for _ = 1, 100 do
        local count = dc.dict:get(decisions.COUNT_KEY)
        assert.is_nil(seen[count])
        seen[count] = true
        decisions.forget(dc, SID, live)
      end
      -- Reloaded (a new worker 0): counts start from the clock, above.
      package.loaded["resty.shared_session.decisions"] = nil
      local reloaded = require "resty.shared_session.decisions"
      stub.sleep(0.001)
      reloaded.open(dc, 1000)
      local count = dc.dict:get(decisions.COUNT_KEY)
      for old in pairs(seen) do
        assert.is_true(count > old)
      end
      package.loaded["resty.shared_session.decisions"] = decisions
    end)

    it("that cannot be stored (dict full) are logged at info, not raised", function()
      local _, ticket = ask()
      local set = dc.dict.set
      dc.dict.set = function() return false, "no memory" end
      local logged = #stub.logs
      remember(ticket)
      dc.dict.set = set
      assert.same({ stub.INFO .. " shared_session: decision not cached: no memory" },
                  stub.log_lines(logged))
      dc.worker:flush_all()
      assert.is_nil(ask())
    end)

    it("never count when they should not, whatever the interleaving and evictions", function()
      math.randomseed(20240611)
      local sids = { ("a"):rep(16), ("b"):rep(16), ("c"):rep(16), SID }
      local groups = { "g1", "g2", "a:b" }
      local sigs = { SIG, ("t"):rep(27) }
      local function pick(list) return list[math.random(#list)] end

      for _, capacity in ipairs { 3, 5, 8, 1000 } do
        dc = { dict = stub.new_dict(capacity), ttl = 1, config_id = "c1",
               worker = decisions.new_worker_cache(capacity) }
        live = decisions.open(dc, 1000)
        local step = 0
        local epoch_step, revoked_step = 0, {}
        local in_flight = {}
        local records = {}      -- what the model knows was decided, and when
        local hits, worker_hits = 0, 0

        -- A decision the model knows of that may still count.
        local function supported(sid, group, sig, allowed)
          for _, r in ipairs(records) do
            if r.sid == sid and r.group == group and r.sig == sig
               and r.allowed == allowed
               and r.step > (revoked_step[sid] or 0) and r.step > epoch_step
               and stub.now() < r.started + dc.ttl
            then
              return true
            end
          end
          return false
        end

        for _ = 1, 20000 do
          step = step + 1
          local op = math.random(100)
          if op <= 55 then
            local sid, group, sig = pick(sids), pick(groups), pick(sigs)
            local value = value_of(sid, sig)
            local in_worker = decisions.lookup(dc, value, group)
            if in_worker ~= nil then
              worker_hits = worker_hits + 1
              assert.is_true(supported(sid, group, sig, in_worker),
                             "a worker answer no valid decision supports")
            end
            -- The read-only look-up (before the HMAC) agrees with the full one.
            local read_only = decisions.hit(dc, value, sid, sig, group)
            local hit, ticket = ask(sid, group, sig)
            assert.are.equal(hit == true, read_only)
            if hit then
              hits = hits + 1
              assert.is_true(supported(sid, group, sig, true),
                             "a hit no valid decision supports")
            elseif ticket then
              in_flight[#in_flight + 1] = {
                sid = sid, group = group, sig = sig, ticket = ticket,
                step = step, started = stub.now(),
                allowed = math.random(4) > 1,
              }
            end
          elseif op <= 75 and #in_flight > 0 then
            -- Mostly one of the latest queries, sometimes a long-delayed one.
            local n = #in_flight
            local r = table.remove(in_flight, math.random(10) > 1
                                   and n - math.random(0, math.min(n - 1, 3))
                                   or math.random(n))
            remember(r.ticket, r.allowed)
            records[#records + 1] = r
          elseif op <= 80 then
            local sid = pick(sids)
            decisions.forget(dc, sid, live)
            revoked_step[sid] = step
          elseif op <= 81 then
            decisions.forget_all(dc, live)
            epoch_step = step
          elseif op <= 82 then
            decisions.close(dc)
            live = decisions.open(dc, 1000)
            epoch_step = step
          elseif op <= 90 then
            local keys = dc.dict:keys()
            if #keys > 0 then
              dc.dict:evict(pick(keys))
            end
          elseif op <= 98 then
            -- The heartbeat puts back the same epoch and count.
            decisions.heartbeat(dc, live)
          else
            stub.sleep(math.random() * 0.2)
          end
        end
        -- The cache is not merely safe because it never hits.
        if capacity >= 8 then
          assert.is_true(hits > 0, "no hit at all with capacity " .. capacity)
          assert.is_true(worker_hits > 0, "no worker hit with capacity " .. capacity)
        end
      end
    end)
  end)
end)
