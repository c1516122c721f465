-- A minimal stand-in for the `ngx` API, enough to load resty.shared_session
-- outside nginx and to exercise its pure logic. HMAC-SHA1 comes from the
-- system's libcrypto through the FFI, so the signature maths is real; anything
-- that needs a request or a socket stays in the nginx tests under resty/t.
local ffi = require "ffi"

ffi.cdef [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha1(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md,
                    unsigned int *md_len);
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

local stub = {
  var = {},
  null = setmetatable({}, { __tostring = function() return "null" end }),
  DEBUG = 8, INFO = 7, NOTICE = 6, WARN = 5, ERR = 4,
  hmac_sha1 = hmac_sha1,
  encode_base64 = encode_base64,
  log = function(level, ...)
    logs[#logs + 1] = { level = level, msg = table.concat({ ... }) }
  end,
  exit = function(status)
    error("ngx.exit(" .. tostring(status) .. ")")
  end,
  logs = logs,
}

return stub
