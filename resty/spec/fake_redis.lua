-- An in-memory stand-in for lua-resty-redis, with the calls the rock makes:
-- enough to test what the modules send and how they treat each reply,
-- outside nginx. Real Redis is tested under resty/t.
--
--   local server = fake_redis.server()
--   server.strings[key] = value; server.sets[key] = { member = true }
--   server.errors.sismember = "ERR boom"  -- that command fails
--   server.errors.get = function(conn) ... end -- fails when this says so
--   server.replies.sismember = "odd"      -- that command answers this
--   server.down = "connection refused"    -- connect() fails
--   package.loaded["resty.redis"] = server.lib   -- before loading the rock
--   server.calls: { "connect 127.0.0.1:6379 pool", "sismember k g", ... }
local stub = require "ngx_stub"

local _M = {}

local function record(server, ...)
  server.calls[#server.calls + 1] = table.concat({ ... }, " ")
end

function _M.server()
  local server = {
    strings = {},
    sets = {},
    ttls = {},            -- key -> what PTTL answers (default: -1 for a key, -2 for none)
    errors = {},          -- command name -> error message
    replies = {},         -- command name -> reply, instead of the real one
    calls = {},
    down = nil,           -- connect error, when set
    password = nil,       -- AUTH needed, when set
    reused = 0,           -- what get_reused_times() answers
    pooled = 0,           -- set_keepalive() calls
    closed = 0,           -- close() calls
    master = nil,         -- what the fake sentinel names: { host =, port = }
    slots = nil,          -- what CLUSTER SLOTS answers
    -- The replies a connection's socket delivers; those after wait in the
    -- connection (as unread bytes would) and receive() times out.
    replies_sent = math.huge,
  }

  local conn = {}
  local conn_mt = { __index = conn }

  local function reply(self, name, value)
    if server.replies[name] ~= nil then
      value = server.replies[name]
    end
    local err = server.errors[name]
    if type(err) == "function" then
      err = err(self)
    end
    if self.pipeline then
      self.pipeline[#self.pipeline + 1] = err and { false, err } or value
      return            -- resty.redis queues the command
    end
    if err then
      return false, err   -- as resty.redis answers an error reply
    end
    return value
  end

  function conn.set_timeout(_, ms)
    record(server, "set_timeout", ms)
  end

  function conn.connect(self, host, port, options)
    self.address = host .. ":" .. port
    record(server, "connect", self.address, options and options.pool or "-")
    if server.down then
      return nil, server.down
    end
    return true
  end

  function conn.get_reused_times()
    return server.reused
  end

  function conn.auth(_, password)
    record(server, "auth", password)
    if password ~= server.password then
      return nil, "WRONGPASS invalid username-password pair"
    end
    return "OK"
  end

  function conn.select(_, db)
    record(server, "select", db)
    return "OK"
  end

  function conn.get(self, key)
    record(server, "get", key)
    local value = server.strings[key]
    if value == nil then
      value = stub.null
    end
    return reply(self, "get", value)
  end

  function conn.pttl(self, key)
    record(server, "pttl", key)
    local ttl = server.ttls[key]
    if ttl == nil then
      ttl = (server.strings[key] ~= nil or server.sets[key] ~= nil) and -1 or -2
    end
    return reply(self, "pttl", ttl)
  end

  function conn.sismember(self, key, member)
    record(server, "sismember", key, member)
    local set = server.sets[key]
    return reply(self, "sismember",
                 set and set[tostring(member)] and 1 or 0)
  end

  function conn.smembers(self, key)
    record(server, "smembers", key)
    local list = {}
    for member in pairs(server.sets[key] or {}) do
      list[#list + 1] = member
    end
    table.sort(list)
    return reply(self, "smembers", list)
  end

  -- The refresh script (refresh.lua): answered by `server.replies.evalsha`
  -- (default: NOSCRIPT, as a server that has not seen it yet) and
  -- `server.replies.eval` (default: 0).
  function conn.evalsha(self, sha, nkeys, ...)
    record(server, "evalsha", sha, nkeys, ...)
    if server.replies.evalsha == nil and not server.errors.evalsha then
      local noscript = "NOSCRIPT No matching script. Please use EVAL."
      if self.pipeline then
        self.pipeline[#self.pipeline + 1] = { false, noscript }
        return
      end
      return nil, noscript
    end
    return reply(self, "evalsha", nil)
  end

  function conn.eval(self, _, nkeys, ...)
    record(server, "eval", nkeys, ...)
    return reply(self, "eval", 0)
  end

  function conn.asking(self)
    record(server, "asking")
    return reply(self, "asking", "OK")
  end

  function conn.cluster(self, sub)
    record(server, "cluster", sub)
    return reply(self, "cluster", server.slots)
  end

  function conn.init_pipeline(self)
    record(server, "init_pipeline")
    self.pipeline = {}
  end

  function conn.commit_pipeline(self)
    record(server, "commit_pipeline")
    local results = self.pipeline
    self.pipeline = nil
    if server.errors.commit_pipeline then
      return nil, server.errors.commit_pipeline
    end
    return results
  end

  -- A connection goes back to the pool only with every reply read: else
  -- the next request on it would read this one's.
  function conn.set_keepalive(self, timeout, size)
    record(server, "set_keepalive", timeout, size)
    assert(self._sock.buffer == "" and self._sock.unread == "",
           "fake redis: a connection pooled with replies unread")
    server.pooled = server.pooled + 1
    return true
  end

  function conn.close()
    record(server, "close")
    server.closed = server.closed + 1
    return true
  end

  -- The connection's cosocket (`_sock`, as resty.redis keeps it), for the
  -- callers that send RESP themselves (refresh.lua): send() parses the
  -- commands and answers each as the methods above would, receive() reads
  -- the replies. `server.errors.send` makes send() fail;
  -- `server.replies_sent` holds back the replies after that many.
  local function encode(value)
    if type(value) == "table" and value[1] == false then
      return "-" .. tostring(value[2]) .. "\r\n"
    elseif type(value) == "number" then
      return ":" .. value .. "\r\n"
    elseif value == stub.null or value == nil then
      return "$-1\r\n"
    end
    value = tostring(value)
    return "$" .. #value .. "\r\n" .. value .. "\r\n"
  end

  local function new_sock(c)
    local fake = { buffer = "", unread = "", sent = 0 }
    function fake.send(_, data)
      record(server, "send")
      if server.errors.send then
        return nil, server.errors.send
      end
      data = type(data) == "table" and table.concat(data) or data
      local pos = 1
      while pos <= #data do
        local n, after = data:match("^%*(%d+)\r\n()", pos)
        assert(n, "fake redis: not RESP")
        pos = after
        local args = {}
        for i = 1, tonumber(n) do
          local len, start = data:match("^%$(%d+)\r\n()", pos)
          args[i] = data:sub(start, start + len - 1)
          pos = start + len + 2
        end
        c.pipeline = {}
        local method = c[args[1]:lower()]
        local value, err = method(c, unpack(args, 2))
        local queued = c.pipeline
        c.pipeline = nil
        if #queued > 0 then
          value = queued[1]
        elseif value == nil and err then
          value = { false, err }
        end
        fake.sent = fake.sent + 1
        if fake.sent > server.replies_sent then
          fake.unread = fake.unread .. encode(value)
        else
          fake.buffer = fake.buffer .. encode(value)
        end
      end
      return #data
    end
    function fake.receive(_, pattern)
      local buffer = fake.buffer
      local empty = fake.unread ~= "" and "timeout" or "closed"
      if pattern == nil or pattern == "*l" then
        local at = buffer:find("\r\n", 1, true)
        if not at then
          return nil, empty
        end
        fake.buffer = buffer:sub(at + 2)
        return buffer:sub(1, at - 1)
      end
      if #buffer < pattern then
        return nil, empty
      end
      fake.buffer = buffer:sub(pattern + 1)
      return buffer:sub(1, pattern)
    end
    return fake
  end

  server.lib = {
    new = function()
      local c = setmetatable({}, conn_mt)
      c._sock = new_sock(c)
      return c
    end,
  }

  -- lua-resty-redis-connector's resty.redis.sentinel, as far as the rock
  -- uses it.
  server.sentinel_lib = {
    get_master = function(_, name)
      record(server, "get_master", name)
      if not server.master then
        return nil, "no master"
      end
      return { host = server.master.host, port = tostring(server.master.port) }
    end,
  }

  return server
end

return _M
