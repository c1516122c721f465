-- A stand-in for an ngx.socket.tcp cosocket: receive() reads the bytes of
-- `input` (what Redis would send), send() records what is sent. When the
-- input runs out, receive() fails with `eof_err` ("closed" by default) after
-- calling `on_eof`, if set.
local _M = {}

local sock = {}
local mt = { __index = sock }

function _M.new(input)
  return setmetatable({
    input = input or "", pos = 1, sent = {}, timeouts = {},
    eof_err = "closed", closed = false,
  }, mt)
end

local function eof(self)
  if self.on_eof then
    self.on_eof(self)
  end
  return nil, self.eof_err
end

function sock:receive(pattern)
  if pattern == nil or pattern == "*l" then
    local s, e = self.input:find("\r\n", self.pos, true)
    if not s then
      return eof(self)
    end
    local line = self.input:sub(self.pos, s - 1)
    self.pos = e + 1
    return line
  end
  if self.pos + pattern - 1 > #self.input then
    return eof(self)
  end
  local data = self.input:sub(self.pos, self.pos + pattern - 1)
  self.pos = self.pos + pattern
  return data
end

function sock:send(data)
  if self.send_err then
    return nil, self.send_err
  end
  self.sent[#self.sent + 1] = data
  return #data
end

function sock:connect(host, port, options)
  self.address = host .. ":" .. port
  self.options = options
  if self.connect_err then
    return nil, self.connect_err
  end
  return 1
end

function sock:settimeouts(connect, send, read)
  self.timeouts[#self.timeouts + 1] = { connect, send, read }
end

function sock:close()
  self.closed = true
  return 1
end

return _M
