-- Included by the scripts that need it (`-- #include lib-issued.lua`):
-- the issue time (ms) of a timed session id (PROTOCOL.md section 11), or
-- nil for an untimed one.
-- luacheck: ignore 211
local function issued(sid)
  if #sid ~= 48 then return nil end
  local i, d = string.match(sid, '^([0-9a-f]+)_([0-9a-f]+)_')
  if not i or #i ~= 12 or #d ~= 12 then return nil end
  return tonumber(i, 16)
end
