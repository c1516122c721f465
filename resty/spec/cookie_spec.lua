-- resty.shared_session.cookie: the Cookie header's grammar, the strict
-- cookie parser, the constant-time comparison, and the signature
-- (PROTOCOL.md sections 1, 2 and 10), against every vector and every Cookie
-- header case of the protocol.
local vectors = require "vectors"
local grammar = require "cookie_grammar"

describe("resty.shared_session.cookie", function()
  local restore, cookie

  setup(function()
    restore = require("ngx_stub").install()
    cookie = require "resty.shared_session.cookie"
  end)

  teardown(function()
    restore()
  end)

  describe("from_header", function()
    local function outcome(value, refused)
      if value ~= nil then
        return { value = value }
      end
      return { none = refused and "refused" or "absent", why = refused }
    end

    for _, case in ipairs(grammar.cases) do
      it(case.why, function()
        local expected = case.value ~= nil and { value = case.value }
                         or { none = case.none }
        -- Once as nginx's $http_cookie gives it, once as a list of lines.
        local joined = #case.header_lines > 0
                       and table.concat(case.header_lines, "; ") or nil
        for _, header in ipairs { joined or false, case.header_lines } do
          local got = outcome(cookie.from_header(header or nil, case.name))
          if got.none == "refused" then
            assert.is_string(got.why)
            got.why = nil
          end
          assert.same(expected, got)
        end
      end)
    end

    it("caps the header at the protocol's size, whitespace aside", function()
      assert.equal(8000, grammar.max_header_bytes)
      local header = "session=A;x=" .. ("x"):rep(grammar.max_header_bytes - 12)
      assert.equal("A", cookie.from_header(header, "session"))
      assert.equal("A", cookie.from_header(" \t" .. header .. "\t ", "session"))
      local none, err = cookie.from_header(header .. "x", "session")
      assert.is_nil(none)
      assert.equal("cookie header longer than 8000 bytes", err)
    end)

    it("says why a header is refused", function()
      local cases = {
        { "session=A\1", "control character in cookie header" },
        { "x=1,session=A", "cookie name after a comma" },
        { "session=A; session=B", "cookies of that name with different values" },
      }
      for _, case in ipairs(cases) do
        local none, err = cookie.from_header(case[1], "session")
        assert.is_nil(none)
        assert.equal(case[2], err)
      end
    end)

    it("finds nothing in no header", function()
      assert.is_nil(cookie.from_header(nil, "session"))
      assert.is_nil(select(2, cookie.from_header(nil, "session")))
      assert.is_nil(cookie.from_header({}, "session"))
    end)
  end)

  describe("parse", function()
    for _, v in ipairs(vectors.valid) do
      it("splits the valid cookie for sid " .. v.sid, function()
        local sid, sig = cookie.parse(v.cookie)
        assert.equal(v.sid, sid)
        assert.equal(v.signature, sig)
      end)
    end

    -- Cases that fail on format alone; the others are well-formed forgeries.
    local well_formed = {
      ["one signature character changed"] = true,
      ["session id changed (upper case)"] = true,
      ["signed with another salt"] = true,
      ["signed with another secret"] = true,
    }
    for _, case in ipairs(vectors.invalid.cases) do
      if not well_formed[case.why] then
        it("rejects: " .. case.why, function()
          local sid, err = cookie.parse(case.cookie)
          assert.is_nil(sid)
          assert.is_string(err)
        end)
      end
    end

    it("checks the 256-byte cap before anything else", function()
      local sid, err = cookie.parse(("a"):rep(257))
      assert.is_nil(sid)
      assert.matches("256", err)
    end)

    it("accepts a cookie of exactly 256 bytes", function()
      local value = ("a"):rep(128) .. "." .. ("b"):rep(27)
      assert.equal(156, #value)
      assert.is_string((cookie.parse(value)))
    end)

    it("bounds the session id to 16..128 characters", function()
      local sig = ("s"):rep(27)
      assert.is_nil((cookie.parse(("a"):rep(15) .. "." .. sig)))
      assert.is_string((cookie.parse(("a"):rep(16) .. "." .. sig)))
      assert.is_string((cookie.parse(("a"):rep(128) .. "." .. sig)))
      assert.is_nil((cookie.parse(("a"):rep(129) .. "." .. sig)))
    end)

    it("rejects characters outside [A-Za-z0-9_-] in the session id", function()
      local sig = ("s"):rep(27)
      for _, c in ipairs { " ", "+", "/", "=", ":", "\0", "\255", "%" } do
        local sid = ("a"):rep(10) .. c .. ("a"):rep(10)
        assert.is_nil((cookie.parse(sid .. "." .. sig)), c)
      end
    end)

    it("rejects a non-string", function()
      assert.is_nil((cookie.parse(nil)))
      assert.is_nil((cookie.parse(42)))
    end)

    it("says why a value is not a session cookie", function()
      local sig = ("s"):rep(27)
      local sid = ("a"):rep(16)
      local cases = {
        { 42, "cookie value is not a string" },
        { ("a"):rep(257), "cookie longer than 256 bytes" },
        { "", "empty cookie" },
        { sid .. "+" .. sig, "invalid character in cookie" },
        { sid .. sig, "no separator in cookie" },
        { sid .. "." .. sig .. ".x", "more than one separator in cookie" },
        { "a." .. sig, "session id is not 16 to 128 characters" },
        { sid .. "." .. sig .. "s", "signature is not 27 characters" },
      }
      for _, case in ipairs(cases) do
        local none, err = cookie.parse(case[1])
        assert.is_nil(none)
        assert.equal(case[2], err)
      end
    end)
  end)

  describe("is_sid", function()
    it("accepts 16 to 128 characters of [A-Za-z0-9_-]", function()
      for _, v in ipairs(vectors.valid) do
        assert.is_true(cookie.is_sid(v.sid), v.sid)
      end
      assert.is_true(cookie.is_sid(("a"):rep(16)))
      assert.is_true(cookie.is_sid(("Z9_-"):rep(32)))
    end)

    it("rejects anything else", function()
      for _, value in ipairs {
        ("a"):rep(15), ("a"):rep(129), ("a"):rep(16) .. ".", ("a"):rep(16) .. ":",
        ("a"):rep(16) .. " ", ("a"):rep(16) .. "\0", "", 1234567890123456,
      } do
        assert.is_false(cookie.is_sid(value), tostring(value))
      end
      assert.is_false(cookie.is_sid(nil))
      assert.is_false(cookie.is_sid({}))
    end)
  end)

  describe("equals_constant_time", function()
    local eq

    setup(function()
      eq = cookie.equals_constant_time
    end)

    it("is true only for equal strings", function()
      assert.is_true(eq("FsOYDgVKMWoijVTT8uWUy_hCy44", "FsOYDgVKMWoijVTT8uWUy_hCy44"))
      assert.is_false(eq("FsOYDgVKMWoijVTT8uWUy_hCy44", "FsOYDgVKMWoijVTT8uWUy_hCy45"))
      assert.is_false(eq("GsOYDgVKMWoijVTT8uWUy_hCy44", "FsOYDgVKMWoijVTT8uWUy_hCy44"))
      assert.is_true(eq("", ""))
    end)

    it("is false when the lengths differ, either way", function()
      assert.is_false(eq("abc", "abcd"))
      assert.is_false(eq("abcd", "abc"))
      assert.is_false(eq("", "a"))
      assert.is_false(eq("a", ""))
    end)
  end)

  describe("derive_key and verify", function()
    local function hex(s)
      return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
    end

    for _, v in ipairs(vectors.valid) do
      it("derives the key of the vector for sid " .. v.sid, function()
        assert.equal(v.derived_key_hex, hex(cookie.derive_key(v.secret, v.salt)))
      end)

      it("verifies the signature of the vector for sid " .. v.sid, function()
        local key = cookie.derive_key(v.secret, v.salt)
        assert.is_true(cookie.verify({ key }, v.sid, v.signature))
        assert.is_false(cookie.verify({}, v.sid, v.signature))
        assert.is_false(cookie.verify({ cookie.derive_key(v.secret, v.salt .. "x") },
                                      v.sid, v.signature))
      end)
    end

    it("accepts a signature made with any of the keys, in any position", function()
      for i, v in ipairs(vectors.rotation) do
        local keys = {}
        for j, secret in ipairs(v.secrets) do
          keys[j] = cookie.derive_key(secret, v.salt)
        end
        local value = v.cookie or v.expected_cookie
        local sid, sig = cookie.parse(value)
        assert.equal(v.valid ~= false, cookie.verify(keys, sid, sig), "rotation " .. i)
        -- The order of the keys never matters to the answer.
        local reversed = {}
        for j = #keys, 1, -1 do
          reversed[#reversed + 1] = keys[j]
        end
        assert.equal(v.valid ~= false, cookie.verify(reversed, sid, sig), "rotation " .. i)
      end
    end)

    it("refuses the well-formed forgeries of the invalid vectors", function()
      local key = cookie.derive_key(vectors.invalid.secret, vectors.invalid.salt)
      for _, case in ipairs(vectors.invalid.cases) do
        local sid, sig = cookie.parse(case.cookie)
        if sid then
          assert.is_false(cookie.verify({ key }, sid, sig), case.why)
        end
      end
    end)

    it("refuses a signature in standard base64 or of another length", function()
      local v = vectors.valid[1]
      local key = cookie.derive_key(v.secret, v.salt)
      local std = v.signature:gsub("%-", "+"):gsub("_", "/")
      if std ~= v.signature then
        assert.is_false(cookie.verify({ key }, v.sid, std))
      end
      assert.is_false(cookie.verify({ key }, v.sid, v.signature:sub(1, 26)))
      assert.is_false(cookie.verify({ key }, v.sid, v.signature .. "="))
      assert.is_false(cookie.verify({ key }, v.sid, ""))
    end)
  end)
end)
