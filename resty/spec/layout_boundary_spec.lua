-- One layout, one place (issue 20): outside layout/*.lua and topology/*.lua
-- no code of the rock asks which key layout (v1, cluster, compact) or which
-- topology (one Redis, Sentinel, Cluster) is in use, by name, flag or
-- metatable: every difference is a method of the layout or the topology.
-- config.lua reads the options once, between its two "layout-boundary"
-- marks, to choose both. The scan works on the code with its comments and
-- string literals taken out, so that prose and require names do not count.

local LIB = "lib/resty"

-- What a test of the layout or topology looks like.
local FORBIDDEN = {
  { "%.key_layout%f[^%w_]", "the key_layout option read" },
  { "key_layout%s*[=~]=", "a comparison of key_layout" },
  { "cluster_layout", "the cluster_layout flag" },
  { "is_compact", "an is_compact flag" },
  { "%.cluster%f[^%w_]", "a .cluster flag (r.cluster)" },
  { "%.sentinels%f[^%w_]", "a .sentinels flag (r.sentinels)" },
  { "%.compact%f[^%w_]", "a .compact flag" },
  { "getmetatable%s*%(", "a look at an object's class" },
}
local NAMES = { "v1", "cluster", "compact", "single", "sentinel" }

-- Comments and string literals out (long ones too), newlines kept so
-- that line numbers stay true. Names compared as strings come back as
-- STR_<name> so the comparison with a layout's name is still seen.
local function code_only(text)
  local out, i, n = {}, 1, #text
  while i <= n do
    local c = text:sub(i, i)
    local long = text:match("^%[(=*)%[", i)
    if text:sub(i, i + 1) == "--" then
      local level = text:match("^%-%-%[(=*)%[", i)
      local stop
      if level then
        stop = select(2, text:find("]" .. level .. "]", i, true)) or n
      else
        stop = (text:find("\n", i, true) or n + 1) - 1
      end
      out[#out + 1] = text:sub(i, stop):gsub("[^\n]", "")
      i = stop + 1
    elseif long then
      local stop = select(2, text:find("]" .. long .. "]", i, true)) or n
      out[#out + 1] = text:sub(i, stop):gsub("[^\n]", "")
      i = stop + 1
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n and text:sub(j, j) ~= c do
        j = j + (text:sub(j, j) == "\\" and 2 or 1)
      end
      local body = text:sub(i + 1, j - 1)
      for _, name in ipairs(NAMES) do
        if body == name then
          body = "STR_" .. name
        end
      end
      out[#out + 1] = body:find("^STR_") and body or '""'
      i = j + 1
    else
      out[#out + 1] = c
      i = i + 1
    end
  end
  return table.concat(out)
end

-- config.lua's one choice taken out (its lines blanked).
local function without_choice(text)
  local choice = "%-%- layout%-boundary: the one choice.-"
                 .. "%-%- layout%-boundary: end of the one choice"
  return (text:gsub(choice,
                    function(s) return (s:gsub("[^\n]", "")) end))
end

-- The tests of the layout or topology in `text`: a list of "line: what".
local function violations(text)
  local found = {}
  local line = 0
  for l in (code_only(without_choice(text)) .. "\n"):gmatch("([^\n]*)\n") do
    line = line + 1
    for _, f in ipairs(FORBIDDEN) do
      if l:find(f[1]) then
        found[#found + 1] = line .. ": " .. f[2]
      end
    end
    for _, name in ipairs(NAMES) do
      if l:find("STR_" .. name, 1, true) and (l:find("[=~]=") or l:find("%f[%w]if%f[^%w]")) then
        found[#found + 1] = line .. ': a comparison with "' .. name .. '"'
      end
    end
  end
  return found
end

-- Every .lua file of the rock outside the layout and topology modules and
-- the Redis scripts.
local function files()
  local list = {}
  local p = assert(io.popen("find " .. LIB .. " -name '*.lua' | sort"))
  for path in p:lines() do
    if not path:find("/layout/", 1, true) and not path:find("/topology/", 1, true)
       and not path:find("/scripts/", 1, true)
    then
      list[#list + 1] = path
    end
  end
  p:close()
  return list
end

describe("the layout boundary", function()
  it("finds a test of the layout or topology in the forms it looks for", function()
    for _, code in ipairs {
      'if r.key_layout == "compact" then end',
      "local x = r.cluster_layout",
      "if r.cluster then end",
      "local s = r.cluster and 1 or 100",
      "if not r.sentinels then end",
      "local is_compact = x",
      'if layout ~= "v1" then end',
      'if self.compact then end',
      "if getmetatable(ks) == v1 then end",
    } do
      assert.is_true(#violations(code) > 0, code)
    end
  end)

  it("lets prose, require names, strings and the cluster module's functions be", function()
    for _, code in ipairs {
      '-- on a cluster (r.cluster) the keys are in other slots',
      'local cluster = require "resty.shared_session.cluster"',
      "local slot = cluster.slot(key)",
      'local s = "r.cluster == true"',
      "local s = [[ key_layout ]]",
      "local keys = ks:refresh_keys(sid)",
      "local size = r:batch_size(100)",
    } do
      assert.same({}, violations(code), code)
    end
  end)

  it("blanks config.lua's one choice and nothing else", function()
    local text = "-- layout-boundary: the one choice\nif r.cluster then end\n"
                 .. "-- layout-boundary: end of the one choice\nif r.sentinels then end\n"
    assert.same({ "4: a .sentinels flag (r.sentinels)" }, violations(text))
  end)

  it("holds in every module of the rock outside layout/ and topology/", function()
    local list = files()
    assert.is_true(#list >= 10, "the rock's modules were not found under " .. LIB)
    local all = {}
    for _, path in ipairs(list) do
      local f = assert(io.open(path, "rb"))
      local text = f:read("*a")
      f:close()
      for _, v in ipairs(violations(text)) do
        all[#all + 1] = path .. ":" .. v
      end
    end
    assert.same({}, all)
  end)
end)
