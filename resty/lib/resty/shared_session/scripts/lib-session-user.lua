-- Included by the scripts that need it (`-- #include lib-session-user.lua`):
-- whose session a JSON names (PROTOCOL.md section 13.1), read with Redis's
-- cjson (its depth limit is section 15.1's, 1000).
--  - session_user(json, field): the field's value when the JSON decodes to
--    an object and the field is a string ('' when it is missing or not a
--    string), or nil when the JSON does not decode to an object (no
--    session of anyone).
-- luacheck: ignore 211
local function session_user(json, field)
  if type(json) ~= 'string' then return nil end
  local ok, session = pcall(cjson.decode, json)
  if not ok or type(session) ~= 'table' then return nil end
  local user = session[field]
  if type(user) == 'string' then return user end
  return ''
end
