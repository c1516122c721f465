-- resty.shared_session.reasons: every reason of the README's "Statuses and
-- log lines" table has one word of the fixed vocabulary, and the README
-- documents that vocabulary.

local reasons = require "resty.shared_session.reasons"

local WORDS = {
  no_session = true, two_sessions = true, session_ended = true,
  not_member = true, unavailable = true,
}

local function readme()
  local f = assert(io.open("README.md", "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

describe("resty.shared_session.reasons", function()
  it("groups every refusal of authorize() into one of five words", function()
    local cases = {
      { 401, "no session cookie", "no_session" },
      { 403, "malformed cookie: session id is not 16 to 128 characters", "no_session" },
      { 403, "malformed cookie: control character in cookie header", "no_session" },
      { 403, "bad signature", "no_session" },
      { 403, "malformed cookie: cookies of that name with different values", "two_sessions" },
      { 403, "no stored signature (expired or destroyed)", "session_ended" },
      { 403, "session past its deadline", "session_ended" },
      { 403, "session issued before the not-before mark", "session_ended" },
      { 403, "not a member of the group", "not_member" },
      { 403, "no group id given", "not_member" },
      { 503, "redis unavailable: timeout", "unavailable" },
      { 503, "configure() was not called", "unavailable" },
    }
    for _, c in ipairs(cases) do
      assert.equal(c[3], reasons.of(c[1], c[2]), c[2])
    end
    assert.is_nil(reasons.of(200))
  end)

  it("has a word for every reason of the README's table, which names each word", function()
    local text = readme()
    local section = text:match("## Statuses and log lines(.-)\n## ")
    assert.is_truthy(section)
    local seen = 0
    for row in section:gmatch("\n| `%a+` |([^\n]*)") do
      local status
      for piece in row:gmatch("[^;,]+") do
        status = tonumber(piece:match("(%d%d%d) `")) or status
        local reason = piece:match("`([^`]+)`")
        if status and reason and not reason:find("^session not refreshed")
           and not reason:find("^malformed session value") then
          local word = reasons.of(status, (reason:gsub("%.%.%.$", "x")))
          assert.is_true(WORDS[word] ~= nil, reason)
          seen = seen + 1
        end
      end
    end
    assert.is_true(seen >= 12, "reasons read from the table: " .. seen)
    for word in pairs(WORDS) do
      assert.is_truthy(section:find("`" .. word .. "`", 1, true), word)
    end
  end)
end)
