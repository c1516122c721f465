-- migrate-target.lua on section 15's layout: the same modes, answers and
-- digest, on the session's one key. KEYS[1]: the key. ARGV: mode, expected
-- digest, dry, channel, sid (see lib-migrate-target.lua), the value
-- (signature then data), the source data key's PTTL. The digest is
-- computed from the value: its data, its signature and its groups (the
-- data's).
-- #include lib-compact-value.lua
-- #include lib-migrate-target.lua
-- luacheck: read globals compact_session compact_groups compact_signature
-- luacheck: read globals compact_json migrate_target raise
return migrate_target({
  exists = function()
    return redis.call('EXISTS', KEYS[1]) == 1
  end,
  digest = function()
    local value = redis.call('GET', KEYS[1])
    local session, hashed = compact_session(value), {}
    if session then
      for i, g in ipairs(compact_groups(session)) do
        hashed[i] = redis.sha1hex(g)
      end
    end
    table.sort(hashed)
    return redis.sha1hex(redis.sha1hex(compact_json(value))
      .. redis.sha1hex(compact_signature(value)) .. table.concat(hashed))
  end,
  write = function()
    redis.call('SET', KEYS[1], ARGV[6])
    if tonumber(ARGV[7]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[7]) end
  end,
  remove = function()
    redis.call('DEL', KEYS[1])
  end,
  extend = function()
    return raise(KEYS[1], tonumber(ARGV[7]))
  end,
})
