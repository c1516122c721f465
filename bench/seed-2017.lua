-- Scenario (c) of the benchmark: how a 2017 config did the check, for
-- comparison only. A new Redis connection for every request, SMEMBERS of the
-- whole groups set, a GET of the stored signature, and a close.
local redis_ok, redis = pcall(require, "resty.redis")
if not redis_ok then redis = require "nginx.redis" end

local cookie = ngx.var.cookie_session
if not cookie then return ngx.exit(401) end
local sid, sig = string.match(cookie, "^([^.]+)%.(.+)$")
if not sid then return ngx.exit(403) end

local red = redis:new()
red:set_timeout(1000)
local ok = red:connect("127.0.0.1", tonumber(ngx.var.bench_redis_port))
if not ok then return ngx.exit(503) end

local stored = red:get("resty_shared_session:signature:" .. sid)
local groups = red:smembers("resty_shared_session:groups:" .. sid)
red:close()

if stored ~= sig then return ngx.exit(403) end
for _, g in ipairs(groups or {}) do
  if g == ngx.var.bench_group then return end
end
return ngx.exit(403)
