-- A minimal stand-in for the `ngx` API, enough to load resty.shared_session
-- and its modules outside nginx and to exercise their pure logic. HMAC-SHA1
-- comes from the system's libcrypto through the FFI, so the signature maths is
-- real. Timers, cosockets and light threads fail unless a spec puts its own
-- fakes in `process` (see below); real I/O stays in the nginx tests under
-- resty/t.
local ffi = require "ffi"

ffi.cdef [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha1(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md,
                    unsigned int *md_len);
unsigned char *SHA1(const unsigned char *d, size_t n, unsigned char *md);
]]

local function load_crypto()
  for _, name in ipairs { "crypto", "libcrypto.so.3", "libcrypto.so.1.1" } do
    local ok, lib = pcall(ffi.load, name)
    if ok then
      return lib
    end
  end
  error("libcrypto not found")
end

local crypto = load_crypto()

local function hmac_sha1(key, msg)
  local out = ffi.new("unsigned char[20]")
  local len = ffi.new("unsigned int[1]")
  crypto.HMAC(crypto.EVP_sha1(), key, #key, msg, #msg, out, len)
  return ffi.string(out, len[0])
end

local function sha1_bin(msg)
  local out = ffi.new("unsigned char[20]")
  crypto.SHA1(msg, #msg, out)
  return ffi.string(out, 20)
end

local ALPHABET =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function encode_base64(s, no_padding)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = 2 + (b and 1 or 0) + (c and 1 or 0)
    for j = 1, 4 do
      if j <= chars then
        local idx = math.floor(n / 2 ^ (6 * (4 - j))) % 64
        out[#out + 1] = ALPHABET:sub(idx + 1, idx + 1)
      elseif not no_padding then
        out[#out + 1] = "="
      end
    end
  end
  return table.concat(out)
end

local logs = {}

-- A clock the specs move by hand: ngx.now() and the fake dict's expiries.
local clock = { now = 1700000000.000 }

-- What ngx.worker reports, and hooks for what does not exist outside nginx:
-- the specs may change or set them. `timer(delay, fn, ...)`, `tcp()`,
-- `spawn(fn, ...)` and `kill(thread)`, when set, stand for ngx.timer.at,
-- ngx.socket.tcp, ngx.thread.spawn and ngx.thread.kill.
local process = { worker_id = 0, pid = 4242, exiting = false }

-- An in-memory lua_shared_dict with the methods the module uses. With a
-- capacity it evicts the least recently used key when full, like the real
-- one under memory pressure, and reports it the same way (forcible).
local function new_dict(capacity)
  local items, order = {}, {}   -- order: keys, least recently used first

  local function touch(key)
    for i = #order, 1, -1 do
      if order[i] == key then
        table.remove(order, i)
        break
      end
    end
    order[#order + 1] = key
  end

  local function live(key)
    local item = items[key]
    if item and item.expires and item.expires <= clock.now then
      items[key] = nil
      for i = #order, 1, -1 do
        if order[i] == key then
          table.remove(order, i)
          break
        end
      end
      return nil
    end
    return item
  end

  local dict = { items = items }

  local function store(key, value, exptime)
    local forcible = false
    if not items[key] and capacity and #order >= capacity then
      local victim = table.remove(order, 1)
      items[victim] = nil
      forcible = true
    end
    items[key] = {
      value = value,
      expires = (exptime and exptime > 0) and clock.now + exptime or nil,
    }
    touch(key)
    return true, nil, forcible
  end

  function dict.get(_, key)
    local item = live(key)
    if not item then
      return nil
    end
    touch(key)
    return item.value
  end

  function dict.set(_, key, value, exptime)
    return store(key, value, exptime)
  end

  function dict.add(_, key, value, exptime)
    if live(key) then
      return false, "exists"
    end
    return store(key, value, exptime)
  end

  function dict.replace(_, key, value, exptime)
    if not live(key) then
      return false, "not found"
    end
    return store(key, value, exptime)
  end

  function dict.ttl(_, key)
    local item = live(key)
    if not item then
      return nil, "not found"
    end
    return item.expires and item.expires - clock.now or 0
  end

  function dict.delete(_, key)
    if items[key] then
      items[key] = nil
      for i = #order, 1, -1 do
        if order[i] == key then
          table.remove(order, i)
          break
        end
      end
    end
  end

  -- incr(key, n, init): as the real one, init (when given) for a missing
  -- key; "not found" without it, "not a number" for another value.
  function dict.incr(_, key, n, init)
    local item = live(key)
    if not item then
      if init == nil then
        return nil, "not found"
      end
      store(key, init + n)
      return init + n
    end
    if type(item.value) ~= "number" then
      return nil, "not a number"
    end
    item.value = item.value + n
    touch(key)
    return item.value
  end

  function dict.get_keys(_, max)
    local keys = {}
    for i = 1, #order do
      if max and max > 0 and i > max then
        break
      end
      keys[i] = order[i]
    end
    return keys
  end

  -- A made-up figure: the real dict counts free pages.
  function dict.free_space()
    return 4096 * ((capacity or 1000) - #order)
  end

  -- For the specs: drop one key as an eviction would.
  function dict.evict(_, key)
    dict.delete(nil, key)
  end

  function dict.keys()
    local keys = {}
    for i = 1, #order do
      keys[i] = order[i]
    end
    return keys
  end

  return dict
end

local stub = {
  var = {},
  null = setmetatable({}, { __tostring = function() return "null" end }),
  DEBUG = 8, INFO = 7, NOTICE = 6, WARN = 5, ERR = 4,
  clock = clock,
  process = process,
  new_dict = new_dict,
  shared = {},
  now = function() return clock.now end,
  sleep = function(seconds) clock.now = clock.now + seconds end,
  timer = {
    at = function(delay, fn, ...)
      if process.timer then
        return process.timer(delay, fn, ...)
      end
      return nil, "no timers outside nginx"
    end,
  },
  socket = {
    tcp = function()
      if process.tcp then
        return process.tcp()
      end
      error("no cosockets outside nginx")
    end,
  },
  thread = {
    spawn = function(fn, ...)
      if process.spawn then
        return process.spawn(fn, ...)
      end
      error("no light threads outside nginx")
    end,
    kill = function(thread)
      if process.kill then
        return process.kill(thread)
      end
      return nil, "no light threads outside nginx"
    end,
  },
  worker = {
    id = function() return process.worker_id end,
    pid = function() return process.pid end,
    exiting = function() return process.exiting end,
  },
  hmac_sha1 = hmac_sha1,
  sha1_bin = sha1_bin,
  encode_base64 = encode_base64,
  log = function(level, ...)
    logs[#logs + 1] = { level = level, msg = table.concat({ ... }) }
  end,
  exit = function(status)
    error("ngx.exit(" .. tostring(status) .. ")")
  end,
  logs = logs,
}

-- The modules of the rock capture `ngx` (and its functions) when they are
-- loaded, so a spec loads them afresh against this stub.
local function unload_rock()
  for name in pairs(package.loaded) do
    if name == "resty.shared_session"
       or name:find("^resty%.shared_session%.")
    then
      package.loaded[name] = nil
    end
  end
end

-- Makes this stub the global `ngx` and unloads every module of the rock:
-- require them after this call. `libs`, optional, says what require(name)
-- gives the rock for the libraries it loads, { [name] = module or false },
-- false meaning "not installed" (e.g. { ["resty.redis"] = fake_redis.lib,
-- ["nginx.redis"] = false }). Returns a function that undoes all of it.
function stub.install(libs)
  local saved_ngx = rawget(_G, "ngx")
  local saved = {}
  rawset(_G, "ngx", stub)
  unload_rock()
  for name, mod in pairs(libs or {}) do
    saved[#saved + 1] = { name, package.loaded[name], package.preload[name] }
    package.loaded[name] = nil
    package.preload[name] = function()
      if not mod then
        error("module '" .. name .. "' not found (ngx_stub)")
      end
      return mod
    end
  end
  return function()
    unload_rock()
    for _, s in ipairs(saved) do
      package.loaded[s[1]], package.preload[s[1]] = s[2], s[3]
    end
    rawset(_G, "ngx", saved_ngx)
  end
end

-- The log lines written since the given count (all of them without one),
-- as "<level> <message>" strings.
function stub.log_lines(since)
  local lines = {}
  for i = (since or 0) + 1, #logs do
    lines[#lines + 1] = logs[i].level .. " " .. logs[i].msg
  end
  return lines
end

return stub
