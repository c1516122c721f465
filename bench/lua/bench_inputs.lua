-- The bench's (r): the two inputs every check reads ($group_id and the
-- Cookie header), read exactly as resty.shared_session reads them, and
-- nothing else; called as the rock's check is
-- (`require("bench_inputs").read()`), so that r/a is what any check that
-- reads them in access_by_lua can reach.
local var = require "resty.shared_session.var"

local request = var.request
local read_group = var.request_reader("group_id")
local read_cookie_header = var.request_reader("http_cookie")

local _M = {}

function _M.read()
    local r = request()
    local group, header = read_group(r), read_cookie_header(r)
    return group, header
end

return _M
