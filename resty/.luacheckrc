-- luacheck configuration for the rock: nginx-Lua globals in the library,
-- busted's in the specs. No global may be written anywhere.
std = "ngx_lua"
max_line_length = 80
allow_defined_top = false

include_files = { "**/*.lua", "*.rockspec", ".busted", ".luacheckrc" }

files["spec"] = { std = "+busted", max_line_length = 100 }
files["*.rockspec"] = { std = "rockspec" }
files[".busted"] = { std = "lua51" }
files[".luacheckrc"] = { std = "luacheckrc" }
-- Redis scripts (EVAL bodies), one file each: Redis's Lua 5.1 sandbox.
files["lib/resty/shared_session/scripts"] = {
   std = "lua51",
   read_globals = {
      "redis", "KEYS", "ARGV", "cjson", "cmsgpack", "bit", "struct",
   },
}
