-- Included by the migration's target scripts
-- (`-- #include lib-migrate-target.lua`): what every one of them does once
-- its layout has given `ops`: exists() (the session is on the target),
-- digest() (of what the target holds), write() (the source's session),
-- remove() (the session's keys) and extend() (each key's time to live
-- raised to the source's, never lowered, never a key re-created; true when
-- one was raised; nothing written when dry). ARGV: mode, expected digest,
-- dry ('1' or ''), channel, sid, then the layout's own.
--  - create: only when the target holds no session under this id;
--  - replace / delete / extend: only while the target holds exactly the
--    digest the migration copied (`changed` otherwise, `gone` when
--    absent); replace and delete publish the id (section 7), so nginx
--    forgets what it decided on the copy.
-- With dry, answers what it would do and writes nothing.
-- luacheck: ignore 211
local function migrate_target(ops)
  local mode, expected, dry = ARGV[1], ARGV[2], ARGV[3] == '1'
  local channel, sid = ARGV[4], ARGV[5]
  local exists = ops.exists()
  if mode == 'create' then
    if exists then return {'exists', ops.digest()} end
    if not dry then ops.write() end
    return {'copied'}
  end
  if not exists then return {'gone'} end
  local held = ops.digest()
  if mode == 'delete' then
    -- Ended on the source since it was copied: the copy ends too, even when
    -- a switched app wrote it since (a logout is never undone; an end cannot
    -- be told from an expiry, and this is the safe side).
    if not dry then
      ops.remove()
      redis.call('PUBLISH', channel, sid)
    end
    return {'deleted', held}
  end
  if held ~= expected then return {'changed', held} end
  if mode == 'replace' then
    if not dry then
      ops.write()
      redis.call('PUBLISH', channel, sid)
    end
    return {'updated'}
  end
  return {ops.extend() and 'extended' or 'unchanged'}
end

-- Raises key's time to live to `want` ms when it is more than a second
-- longer (a second is the copy's own delay, not a use).
local function raise(key, want)
  local now = redis.call('PTTL', key)
  if now > 0 and want > now + 1000 then
    if ARGV[3] ~= '1' then redis.call('PEXPIRE', key, want) end
    return true
  end
  return false
end
