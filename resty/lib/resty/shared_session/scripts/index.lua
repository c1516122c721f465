local now, at = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], 'GT', at, ARGV[3])
if redis.call('PTTL', KEYS[1]) < at - now then
  redis.call('PEXPIRE', KEYS[1], at - now)
end
return redis.call('ZCARD', KEYS[1])
