-- The protocol's test vectors (protocol/vectors.json), decoded. The shared
-- folder beside the repository holds the authoritative copy; a clone without
-- it uses the repository's copy (kept identical by a test).
local cjson = require "cjson"

local f = io.open("../../shared/protocol/vectors.json", "rb")
  or assert(io.open("../protocol/vectors.json", "rb"))
local text = f:read("*a")
f:close()

return cjson.decode(text)
