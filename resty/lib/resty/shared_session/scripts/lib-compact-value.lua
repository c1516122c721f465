-- Included by the scripts that need it (`-- #include lib-compact-value.lua`):
-- PROTOCOL.md section 15's value, `<sig><json>`, read with Redis's cjson.
--  - compact_session(value): the decoded JSON table, or nil when the value
--    is malformed (not 27 signature bytes, `{`, one JSON object within
--    section 15.1's bounds: at most 65536 bytes; Redis's cjson refuses more
--    than 1000 levels of nesting and a lone surrogate's escape itself);
--  - compact_groups(session): the string members of its `groups`, each once;
--  - compact_signature(value), compact_json(value): the value's two parts.
-- luacheck: ignore 211
local SIGNATURE_LENGTH = 27
local MAX_JSON_BYTES = 65536

local function compact_session(value)
  if type(value) ~= 'string' or #value < SIGNATURE_LENGTH + 2
     or #value - SIGNATURE_LENGTH > MAX_JSON_BYTES then
    return nil
  end
  local head = string.sub(value, 1, SIGNATURE_LENGTH + 1)
  if not string.find(head, '^[A-Za-z0-9_%-]+{$') then return nil end
  local json = string.sub(value, SIGNATURE_LENGTH + 1)
  local ok, session = pcall(cjson.decode, json)
  if ok and type(session) == 'table' then return session end
  return nil
end

local function compact_groups(session)
  local groups, seen = {}, {}
  if type(session.groups) == 'table' then
    for _, g in ipairs(session.groups) do
      if type(g) == 'string' and not seen[g] then
        seen[g] = true
        groups[#groups + 1] = g
      end
    end
  end
  return groups
end

local function compact_signature(value)
  return string.sub(value, 1, SIGNATURE_LENGTH)
end

local function compact_json(value)
  return string.sub(value, SIGNATURE_LENGTH + 1)
end
