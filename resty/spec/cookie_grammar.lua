-- The protocol's Cookie header cases (protocol/cookie-grammar.json,
-- PROTOCOL.md section 10), decoded into byte strings: the file spells each
-- byte as one character U+0000-U+00FF, which cjson turns into UTF-8.
-- Each case gets `header_lines` (its lines, with `fill` applied) and `name`.
local cjson = require "cjson"

local f = assert(io.open("../protocol/cookie-grammar.json", "rb"))
local doc = cjson.decode(f:read("*a"))
f:close()

local function latin1(s)
  return (s:gsub("[\192-\255][\128-\191]*", function(seq)
    local lead, cont = seq:byte(1, 2)
    assert(#seq == 2 and lead <= 0xC3, "not a character U+0000-U+00FF")
    return string.char((lead - 0xC0) * 64 + (cont - 0x80))
  end))
end

for _, case in ipairs(doc.cases) do
  local lines = {}
  for i, line in ipairs(case.lines) do
    lines[i] = latin1(line)
  end
  if case.fill then
    local n = #lines
    local short = case.fill - #table.concat(lines, "; "):gsub("[ \t]", "")
    lines[n] = lines[n] .. ("x"):rep(short)
  end
  case.header_lines = lines
  case.name = case.name or "session"
  if type(case.value) == "string" then
    case.value = latin1(case.value)
  end
end

return doc
