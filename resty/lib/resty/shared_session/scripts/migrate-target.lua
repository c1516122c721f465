-- PROTOCOL.md section 14: one session copied to section 3's three keys on
-- the target (the cluster layout), in its slot, atomically.
-- KEYS: the three keys. ARGV: mode, expected digest, dry, channel, sid (see
-- lib-migrate-target.lua), data, signature, the three PTTLs, then the
-- groups. The digest: SHA-1 of the SHA-1s of data and signature and the
-- sorted SHA-1s of the groups (hex digests sort alike in any collation).
-- #include lib-migrate-target.lua
-- luacheck: read globals migrate_target raise
local function expire(key, pttl)
  if pttl > 0 then redis.call('PEXPIRE', key, pttl) end
end

return migrate_target({
  exists = function()
    return redis.call('EXISTS', KEYS[1]) == 1
  end,
  digest = function()
    local members = redis.call('SMEMBERS', KEYS[3])
    local hashed = {}
    for i, g in ipairs(members) do hashed[i] = redis.sha1hex(g) end
    table.sort(hashed)
    local signature = redis.call('GET', KEYS[2]) or ''
    return redis.sha1hex(redis.sha1hex(redis.call('GET', KEYS[1]))
      .. redis.sha1hex(signature) .. table.concat(hashed))
  end,
  write = function()
    redis.call('SET', KEYS[1], ARGV[6])
    expire(KEYS[1], tonumber(ARGV[8]))
    redis.call('DEL', KEYS[2], KEYS[3])
    if ARGV[7] ~= '' then
      redis.call('SET', KEYS[2], ARGV[7])
      expire(KEYS[2], tonumber(ARGV[9]))
    end
    if #ARGV >= 11 then
      redis.call('SADD', KEYS[3], unpack(ARGV, 11))
      expire(KEYS[3], tonumber(ARGV[10]))
    end
  end,
  remove = function()
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  end,
  extend = function()
    local raised = false
    for i = 1, 3 do
      if raise(KEYS[i], tonumber(ARGV[7 + i])) then raised = true end
    end
    return raised
  end,
})
