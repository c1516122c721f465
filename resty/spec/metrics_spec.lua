-- resty.shared_session.metrics: counts per worker, added up in a dict by
-- each worker's flush, and the Prometheus text format (0.0.4) written from
-- the dict; against the stub's dict. Real nginx: t/metrics.spec.ts.

describe("resty.shared_session.metrics", function()
  local stub, restore, metrics, dict

  local CHECK   -- config.lua's option checks, as configure() hands them

  -- How configure() reports a bad option.
  local function option(name, message)
    return 'shared_session.configure: option "' .. name .. '" ' .. message
  end

  before_each(function()
    stub = require "ngx_stub"
    restore = stub.install()
    CHECK = require("resty.shared_session.config").CHECK
    dict = stub.new_dict()
    stub.shared.metrics = dict
    metrics = require "resty.shared_session.metrics"
  end)

  after_each(function()
    stub.shared.metrics = nil
    restore()
  end)

  local function new()
    return metrics.new({ dict = "metrics" }, CHECK, {})
  end

  -- The text's series as { [series] = value }, and its lines in order.
  local function parse(text)
    local series, lines = {}, {}
    for line in text:gmatch("[^\n]+") do
      lines[#lines + 1] = line
      if line:sub(1, 1) ~= "#" then
        local k, v = line:match("^(.-) (%S+)$")
        series[k] = tonumber(v)
      end
    end
    return series, lines
  end

  describe("new", function()
    it("is off (nil) without the option, and checks it", function()
      assert.is_nil(metrics.new(nil, CHECK))
      assert.is_nil(metrics.new(false, CHECK))
      local function with(opts) return function() metrics.new(opts, CHECK) end end
      assert.has_error(with { dict = "nope" },
                       option("metrics.dict", "must name a lua_shared_dict"))
      assert.has_error(with {}, option("metrics.dict", "must be a non-empty string"))
      assert.has_error(with { dict = "metrics", colour = 1 },
                       option("metrics.colour", "is unknown"))
      assert.has_error(with { dict = "metrics", interval = 2 },
                       option("metrics.interval", "must be at most 1 (second)"))
      assert.has_error(with { dict = "metrics", interval = 0 },
                       option("metrics.interval", "must be at least 0.001"))
      assert.has_error(with(true), option("metrics", "must be a table"))
      assert.equal(1, metrics.new({ dict = "metrics" }, CHECK).interval)
    end)
  end)

  describe("flush", function()
    it("adds each worker's counts to the dict, and starts them again from zero", function()
      local w1, w2 = new(), new()       -- two workers, one dict
      w1.counts[metrics.ALLOWED] = 3
      w2.counts[metrics.ALLOWED] = 4
      w2.counts[metrics.REFUSED.not_member] = 1
      w1.counts[metrics.WORKER_HIT] = 2
      assert.is_true(metrics.flush(w1))
      assert.is_true(metrics.flush(w2))
      assert.is_true(metrics.flush(w1))  -- nothing new: nothing added twice
      assert.equal(7, dict:get('shared_session_decisions_total{result="allowed",reason="none"}'))
      assert.equal(1, dict:get('shared_session_decisions_total{result="refused",'
                               .. 'reason="not_member"}'))
      assert.equal(2, dict:get('shared_session_decision_cache_total{result="worker_hit"}'))
      assert.equal(0, w1.counts[metrics.ALLOWED])
      -- A series that never moved is not written by a flush.
      assert.is_nil(dict:get('shared_session_decision_cache_total{result="miss"}'))
    end)

    it("writes histograms as cumulative buckets, +Inf being _count", function()
      local w1, w2 = new(), new()
      metrics.redis_time(w1, "check", 0.0003)
      metrics.redis_time(w1, "check", 0.003)
      metrics.redis_time(w2, "check", 0.2)
      metrics.redis_time(w2, "check", 7)        -- past the last bucket
      metrics.redis_time(w2, "refresh", 0.001)  -- at a bound: in it (le)
      metrics.flush(w1)
      metrics.flush(w2)
      local series = parse(metrics.text(metrics.figures(w1)))
      local check = function(le)
        return series['shared_session_redis_seconds_bucket{op="check",le="' .. le .. '"}']
      end
      assert.same({ 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 4 },
                  { check("0.0005"), check("0.001"), check("0.0025"), check("0.005"),
                    check("0.01"), check("0.025"), check("0.05"), check("0.1"),
                    check("0.25"), check("0.5"), check("1"), check("2.5"), check("+Inf") })
      assert.equal(4, series['shared_session_redis_seconds_count{op="check"}'])
      assert.near(7.2033, series['shared_session_redis_seconds_sum{op="check"}'], 1e-9)
      assert.equal(0, series['shared_session_redis_seconds_bucket{op="refresh",le="0.0005"}'])
      assert.equal(1, series['shared_session_redis_seconds_bucket{op="refresh",le="0.001"}'])
    end)

    it("never raises: a failure is counted and logged once per worker", function()
      local w = new()
      w.dict = { incr = function() return nil, "no memory" end }
      w.counts[metrics.ALLOWED] = 1
      local logged = #stub.logs
      assert.is_false(metrics.flush(w))
      w.counts[metrics.ALLOWED] = 1
      assert.is_false(metrics.flush(w))
      local lines = stub.log_lines(logged)
      assert.equal(1, #lines)
      assert.matches("metrics flush failed .*no memory", lines[1])
      assert.equal(2, w.counts[metrics.ERRORS])
    end)
  end)

  describe("text (Prometheus text format 0.0.4)", function()
    it("writes HELP and TYPE once per family, then its series, integers without a dot", function()
      local w = new()
      w.counts[metrics.ALLOWED] = 2
      w.counts[metrics.REFUSED.no_session] = 1
      metrics.notice_applied(w, 0.0001)
      metrics.subscriber_lapse(w)
      metrics.redis_error(w, "check", "redis unavailable: connect: connection refused")
      metrics.flush(w)
      local _, lines = parse(metrics.text(metrics.figures(w)))
      local function index_of(line)
        for i, l in ipairs(lines) do
          if l == line then return i end
        end
      end
      local help = index_of("# HELP shared_session_decisions_total Access decisions by result and"
                            .. " reason (PROTOCOL.md 16.3).")
      assert.truthy(help)
      assert.equal("# TYPE shared_session_decisions_total counter", lines[help + 1])
      assert.same({ 'shared_session_decisions_total{result="allowed",reason="none"} 2',
                    'shared_session_decisions_total{result="refused",reason="no_session"} 1' },
                  { lines[help + 2], lines[help + 3] })
      local n = 0
      for _, l in ipairs(lines) do
        if l == "# TYPE shared_session_decisions_total counter" then n = n + 1 end
      end
      assert.equal(1, n)
      assert.truthy(index_of('shared_session_redis_errors_total{op="check",kind="connection"} 1'))
      assert.truthy(index_of("# TYPE shared_session_notice_apply_seconds histogram"))
      assert.truthy(index_of('shared_session_notice_apply_seconds_bucket{le="+Inf"} 1'))
      assert.truthy(index_of("shared_session_notice_apply_seconds_count 1"))
      assert.truthy(index_of("shared_session_notices_applied_total 1"))
      assert.truthy(index_of("# TYPE shared_session_subscriber_lapses_total counter"))
      assert.truthy(index_of("shared_session_subscriber_lapses_total 1"))
      assert.truthy(index_of('shared_session_dict_free_bytes{dict="metrics"} '
                             .. dict:free_space()))
    end)

    it("writes a histogram's buckets in order, +Inf, then _sum and _count", function()
      local text = metrics.text {
        { name = "shared_session_redis_seconds", type = "histogram", help = "h",
          label_text = 'op="ping"', sum = 0.5,  count = 2,
          buckets = { { 0.0005, 1 }, { 1, 2 }, { "+Inf", 2 } } },
      }
      assert.equal(table.concat({
        "# HELP shared_session_redis_seconds h",
        "# TYPE shared_session_redis_seconds histogram",
        'shared_session_redis_seconds_bucket{op="ping",le="0.0005"} 1',
        'shared_session_redis_seconds_bucket{op="ping",le="1"} 2',
        'shared_session_redis_seconds_bucket{op="ping",le="+Inf"} 2',
        'shared_session_redis_seconds_sum{op="ping"} 0.5',
        'shared_session_redis_seconds_count{op="ping"} 2',
      }, "\n") .. "\n", text)
    end)
  end)

  describe("figures", function()
    it("gives name, type, labels and value; histograms with buckets, sum and count", function()
      local w = new()
      w.counts[metrics.MISS] = 5
      metrics.redis_time(w, "get", 0.02)
      metrics.flush(w)
      local by = {}
      for _, s in ipairs(metrics.figures(w)) do
        by[s.name .. (s.labels.result or s.labels.op or s.labels.dict or "")] = s
      end
      local miss = by["shared_session_decision_cache_totalmiss"]
      assert.same({ "counter", { result = "miss" }, 5 }, { miss.type, miss.labels, miss.value })
      local get = by["shared_session_redis_secondsget"]
      assert.same({ "histogram", { op = "get" }, 1 }, { get.type, get.labels, get.count })
      assert.same({ 0.01, 0 }, get.buckets[5])
      assert.same({ 0.025, 1 }, get.buckets[6])
      assert.same({ "+Inf", 1 }, get.buckets[13])
    end)
  end)

  describe("error_kind", function()
    it("reads the kind from the error's message", function()
      assert.equal("timeout", metrics.error_kind("redis error: timeout"))
      assert.equal("connection", metrics.error_kind("connect: connection refused"))
      assert.equal("connection", metrics.error_kind("closed"))
      assert.equal("reply", metrics.error_kind("ERR unknown command"))
      assert.equal("reply", metrics.error_kind("NOAUTH Authentication required."))
      assert.equal("reply", metrics.error_kind("auth: WRONGPASS invalid password"))
      assert.equal("other", metrics.error_kind("unexpected reply"))
    end)
  end)
end)
