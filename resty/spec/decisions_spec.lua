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
    local dc

    before_each(function()
      dc = { dict = stub.new_dict(), ttl = 1, config_id = "c1" }
      dc.dict:set(decisions.EPOCH_KEY, decisions.fresh_token())
    end)

    local function ask(sid, group, sig)
      return decisions.cached(dc, sid or SID, sig or SIG, group or "g1")
    end

    local function remember(tag, sid, group, sig, started)
      decisions.store(dc, sid or SID, sig or SIG, group or "g1", tag,
                      started or stub.now())
    end

    it("are reused once stored", function()
      local hit, tag = ask()
      assert.is_nil(hit)
      assert.is_string(tag)
      remember(tag)
      assert.is_true(ask())
      assert.is_true(ask())
    end)

    it("are per group and per signature", function()
      local _, tag = ask()
      remember(tag)
      assert.is_nil(ask(SID, "g2"))
      assert.is_nil(ask(SID, "g1", ("t"):rep(27)))
      assert.is_nil(ask(("b"):rep(36), "g1"))
    end)

    it("are bypassed, and nothing is stored, without an epoch", function()
      local _, tag = ask()
      remember(tag)
      dc.dict:delete(decisions.EPOCH_KEY)
      local hit, no_tag = ask()
      assert.is_nil(hit)
      assert.is_nil(no_tag)
    end)

    it("are dropped by a new epoch (a new subscription)", function()
      local _, tag = ask()
      remember(tag)
      dc.dict:set(decisions.EPOCH_KEY, decisions.fresh_token())
      assert.is_nil(ask())
    end)

    it("are dropped by a revocation, for every group of the session only", function()
      local other = ("b"):rep(36)
      for _, g in ipairs { "g1", "g2" } do
        local _, tag = ask(SID, g)
        remember(tag, SID, g)
      end
      local _, tag = ask(other, "g1")
      remember(tag, other, "g1")
      decisions.forget(dc, SID)
      assert.is_nil(ask(SID, "g1"))
      assert.is_nil(ask(SID, "g2"))
      assert.is_true(ask(other, "g1"))
    end)

    it("made before a revocation and stored after it do not count", function()
      local _, tag = ask()          -- query sent...
      decisions.forget(dc, SID)     -- ...the notice arrives...
      remember(tag)                 -- ...then the (stale) answer
      assert.is_nil(ask())
    end)

    it("made after a revocation count", function()
      decisions.forget(dc, SID)
      local _, tag = ask()
      remember(tag)
      assert.is_true(ask())
    end)

    it("stop counting when any of their keys is evicted", function()
      for _, key in ipairs { decisions.EPOCH_KEY, "s:" .. SID, "d:" .. SID .. ":g1" } do
        local _, tag = ask()
        remember(tag)
        assert.is_true(ask())
        dc.dict:evict(key)
        assert.is_nil(ask(), key)
        if key == decisions.EPOCH_KEY then
          dc.dict:set(decisions.EPOCH_KEY, decisions.fresh_token())
        end
      end
    end)

    it("live at most ttl after their query was sent", function()
      local started = stub.now()
      local _, tag = ask()
      stub.sleep(0.4)               -- the Redis round trip
      remember(tag, SID, "g1", SIG, started)
      stub.sleep(0.59)
      assert.is_true(ask())
      stub.sleep(0.02)
      assert.is_nil(ask())
    end)

    it("count only under the configuration they were made under", function()
      local _, tag = ask()
      remember(tag)
      assert.is_true(decisions.hit(dc, SID, SIG, "g1"))
      dc.config_id = "c2"     -- configure() again, e.g. a reload that drops a secret
      assert.is_false(decisions.hit(dc, SID, SIG, "g1"))
      assert.is_nil(ask())
    end)

    it("are looked up before the HMAC without writing to the dict", function()
      local before = #dc.dict:keys()
      assert.is_false(decisions.hit(dc, ("f"):rep(20), SIG, "g1"))
      assert.are.equal(before, #dc.dict:keys())
    end)

    it("are not stored when the answer came after ttl", function()
      local started = stub.now()
      local _, tag = ask()
      stub.sleep(1.2)
      remember(tag, SID, "g1", SIG, started)
      assert.is_nil(dc.dict:get("d:" .. SID .. ":g1"))
    end)

    it("are stored as the README says: d:<sid>:<group> = <epoch> <token> <sig>", function()
      local _, tag = ask()
      remember(tag)
      local epoch = dc.dict:get(decisions.EPOCH_KEY)
      local token = dc.dict:get("s:" .. SID)
      assert.is_string(token)
      assert.equal("c1/" .. epoch .. " " .. token .. " " .. SIG,
                   dc.dict:get("d:" .. SID .. ":g1"))
      assert.equal("d:" .. SID .. ":g1", decisions.key(SID, "g1"))
    end)

    it("give a session's token the decisions' ttl", function()
      ask()
      assert.is_string(dc.dict:get("s:" .. SID))
      stub.sleep(1.01)
      assert.is_nil(dc.dict:get("s:" .. SID))
    end)

    it("are not touched by a revocation of a session with nothing cached", function()
      local before = #dc.dict:keys()
      decisions.forget(dc, SID)
      assert.are.equal(before, #dc.dict:keys())
      assert.is_nil(dc.dict:get("s:" .. SID))
    end)

    it("that cannot be stored (dict full) are logged at info, not raised", function()
      local _, tag = ask()
      local set = dc.dict.set
      dc.dict.set = function() return false, "no memory" end
      local logged = #stub.logs
      remember(tag)
      dc.dict.set = set
      assert.same({ stub.INFO .. " shared_session: decision not cached: no memory" },
                  stub.log_lines(logged))
      assert.is_nil(ask())
    end)

    it("never count when they should not, whatever the interleaving and evictions", function()
      math.randomseed(20240611)
      local sids = { ("a"):rep(16), ("b"):rep(16), ("c"):rep(16), SID }
      local groups = { "g1", "g2", "a:b" }
      local sigs = { SIG, ("t"):rep(27) }
      local function pick(list) return list[math.random(#list)] end

      for _, capacity in ipairs { 3, 5, 8, 1000 } do
        dc = { dict = stub.new_dict(capacity), ttl = 1, config_id = "c1" }
        local step = 0
        local epoch_step, revoked_step = 0, {}
        local in_flight = {}
        local records = {}      -- what the model knows was decided, and when
        local hits = 0
        dc.dict:set(decisions.EPOCH_KEY, decisions.fresh_token())
        local epoch = dc.dict:get(decisions.EPOCH_KEY)

        for _ = 1, 20000 do
          step = step + 1
          local op = math.random(100)
          if op <= 55 then
            local sid, group, sig = pick(sids), pick(groups), pick(sigs)
            -- The read-only look-up (before the HMAC) agrees with the full one.
            local read_only = decisions.hit(dc, sid, sig, group)
            local hit, tag = ask(sid, group, sig)
            assert.are.equal(hit == true, read_only)
            if hit then
              hits = hits + 1
              local ok = false
              for _, r in ipairs(records) do
                if r.sid == sid and r.group == group and r.sig == sig
                   and r.step > (revoked_step[sid] or 0) and r.step > epoch_step
                   and stub.now() < r.started + dc.ttl
                then
                  ok = true
                  break
                end
              end
              assert.is_true(ok, "a hit no valid decision supports")
            elseif tag then
              in_flight[#in_flight + 1] = {
                sid = sid, group = group, sig = sig, tag = tag,
                step = step, started = stub.now(),
              }
            end
          elseif op <= 75 and #in_flight > 0 then
            local r = table.remove(in_flight, math.random(#in_flight))
            remember(r.tag, r.sid, r.group, r.sig, r.started)
            records[#records + 1] = r
          elseif op <= 85 then
            local sid = pick(sids)
            decisions.forget(dc, sid)
            revoked_step[sid] = step
          elseif op <= 88 then
            epoch = decisions.fresh_token()
            dc.dict:set(decisions.EPOCH_KEY, epoch)
            epoch_step = step
          elseif op <= 93 then
            local keys = dc.dict:keys()
            if #keys > 0 then
              dc.dict:evict(pick(keys))
            end
          elseif op <= 96 then
            -- The heartbeat puts back the same epoch (the subscription held).
            dc.dict:set(decisions.EPOCH_KEY, epoch)
          else
            stub.sleep(math.random() * 0.3)
          end
        end
        -- The cache is not merely safe because it never hits.
        if capacity >= 5 then
          assert.is_true(hits > 0, "no hit at all with capacity " .. capacity)
        end
      end
    end)
  end)
end)
