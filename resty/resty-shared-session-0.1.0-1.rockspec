-- The nginx side of the shared-session protocol: the 0.1.x API of
-- flask-resty-shared-session, plus configure()/authorize()/access().
rockspec_format = "3.0"
package = "resty-shared-session"
version = "0.1.0-1"

source = {
   url = "git+https://github.com/resty-shared-session/resty-shared-session.git",
   tag = "v0.1.0",
}

description = {
   summary = "Check a Flask or NestJS session in nginx: signature, groups",
   detailed = [[
resty.shared_session lets nginx (OpenResty, or nginx with the Lua module)
verify the session cookie of a Flask (flask-resty-shared-session) or NestJS
application and check the session's group membership in Redis, so that
group-scoped responses can be authorized and cached in nginx. The signature is
checked locally with the application's secret (HMAC-SHA1, itsdangerous
format) or against the copy stored in Redis; the membership check is one
SISMEMBER on a pooled connection. It keeps the 0.1.x Lua API unchanged.
]],
   homepage = "https://github.com/resty-shared-session/resty-shared-session",
   license = "MIT",
   labels = { "openresty", "nginx", "session", "redis", "flask" },
}

-- Needs at run time: ngx_lua (with lua-resty-core), lua-resty-redis (named
-- nginx.redis on Debian), and optionally lua-cjson for get_data(). All ship
-- with OpenResty, so none is listed here: a rock would install a second copy.
dependencies = {
   "lua >= 5.1",
}

build = {
   type = "builtin",
   modules = {
      ["resty.shared_session"] = "resty/lib/resty/shared_session.lua",
      ["resty.shared_session.cluster"] =
         "resty/lib/resty/shared_session/cluster.lua",
      ["resty.shared_session.compact"] =
         "resty/lib/resty/shared_session/compact.lua",
      ["resty.shared_session.compat"] =
         "resty/lib/resty/shared_session/compat.lua",
      ["resty.shared_session.config"] =
         "resty/lib/resty/shared_session/config.lua",
      ["resty.shared_session.control"] =
         "resty/lib/resty/shared_session/control.lua",
      ["resty.shared_session.cookie"] =
         "resty/lib/resty/shared_session/cookie.lua",
      ["resty.shared_session.decisions"] =
         "resty/lib/resty/shared_session/decisions.lua",
      ["resty.shared_session.worker_cache"] =
         "resty/lib/resty/shared_session/worker_cache.lua",
      ["resty.shared_session.layout.base"] =
         "resty/lib/resty/shared_session/layout/base.lua",
      ["resty.shared_session.layout.v1"] =
         "resty/lib/resty/shared_session/layout/v1.lua",
      ["resty.shared_session.layout.cluster"] =
         "resty/lib/resty/shared_session/layout/cluster.lua",
      ["resty.shared_session.layout.compact"] =
         "resty/lib/resty/shared_session/layout/compact.lua",
      ["resty.shared_session.log"] =
         "resty/lib/resty/shared_session/log.lua",
      ["resty.shared_session.metrics"] =
         "resty/lib/resty/shared_session/metrics.lua",
      ["resty.shared_session.health"] =
         "resty/lib/resty/shared_session/health.lua",
      ["resty.shared_session.audit"] =
         "resty/lib/resty/shared_session/audit.lua",
      ["resty.shared_session.reasons"] =
         "resty/lib/resty/shared_session/reasons.lua",
      ["resty.shared_session.refresh"] =
         "resty/lib/resty/shared_session/refresh.lua",
      ["resty.shared_session.redis"] =
         "resty/lib/resty/shared_session/redis.lua",
      ["resty.shared_session.resp"] =
         "resty/lib/resty/shared_session/resp.lua",
      ["resty.shared_session.session_id"] =
         "resty/lib/resty/shared_session/session_id.lua",
      ["resty.shared_session.subscriber"] =
         "resty/lib/resty/shared_session/subscriber.lua",
      ["resty.shared_session.topology.single"] =
         "resty/lib/resty/shared_session/topology/single.lua",
      ["resty.shared_session.topology.sentinel"] =
         "resty/lib/resty/shared_session/topology/sentinel.lua",
      ["resty.shared_session.topology.cluster"] =
         "resty/lib/resty/shared_session/topology/cluster.lua",
      -- Redis scripts, not modules of the rock: refresh.lua reads them once,
      -- when it loads, from where package.path finds these names.
      ["resty.shared_session.scripts.refresh"] =
         "resty/lib/resty/shared_session/scripts/refresh.lua",
      ["resty.shared_session.scripts.index"] =
         "resty/lib/resty/shared_session/scripts/index.lua",
      ["resty.shared_session.scripts.lib-compact-value"] =
         "resty/lib/resty/shared_session/scripts/lib-compact-value.lua",
      ["resty.shared_session.var"] =
         "resty/lib/resty/shared_session/var.lua",
   },
}
