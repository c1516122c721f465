-- resty.shared_session.resp: the little of RESP (the Redis protocol) that
-- the revocation subscriber speaks on its bare cosocket (resty.redis cannot
-- send a PING while another light thread waits for a reply), and that the
-- refresh and the decision-cache miss send on a pooled connection's socket
-- (cheaper than resty.redis building each command).

local ngx = ngx
local ngx_null = ngx.null

local type = type
local tostring = tostring
local tonumber = tonumber
local sub = string.sub
local concat = table.concat


local _M = { _VERSION = "0.1.0" }


-- One bulk string: `value` (a string or a number) as RESP sends it.
local function bulk(value)
    value = tostring(value)
    return "$" .. #value .. "\r\n" .. value .. "\r\n"
end
_M.bulk = bulk


-- The bytes of one command: an array of bulk strings. (For a command sent
-- often, concatenate bulk()s instead: a vararg table and its appends cost
-- about 36 us a command here, ten times more.)
local function command(...)
    local args = { ... }
    local out = { "*", #args, "\r\n" }
    for i = 1, #args do
        local arg = tostring(args[i])
        out[#out + 1] = "$"
        out[#out + 1] = #arg
        out[#out + 1] = "\r\n"
        out[#out + 1] = arg
        out[#out + 1] = "\r\n"
    end
    return concat(out)
end
_M.command = command


-- One reply read from `sock` (a cosocket, or anything with its receive()):
-- a string, a number, a table (array), ngx.null, false and the message (an
-- error reply), or nil and the socket's error.
local function read(sock)
    local line, err = sock:receive()
    if not line then
        return nil, err
    end
    local kind, rest = sub(line, 1, 1), sub(line, 2)
    if kind == "+" then
        return rest
    elseif kind == "-" then
        return false, rest
    elseif kind == ":" then
        return tonumber(rest)
    end

    local n = tonumber(rest)
    if not n then
        return nil, "bad reply from redis"
    end
    if n < 0 then
        return ngx_null
    end
    if kind == "$" then
        local data
        data, err = sock:receive(n + 2)
        if not data then
            return nil, err
        end
        return sub(data, 1, n)
    elseif kind == "*" then
        local items = {}
        for i = 1, n do
            local item
            item, err = read(sock)
            if item == nil then
                return nil, err
            end
            items[i] = item
        end
        return items
    end
    return nil, "bad reply from redis"
end
_M.read = read


-- Sends `commands` (the bytes of n commands: a string, or a table of
-- strings as send() takes them) on `sock` in one write, then reads their n
-- replies in order. The list of replies (an error reply as { false,
-- message }, as resty.redis's commit_pipeline() gives it), or nil and the
-- socket's error: replies may then be left unread, so the connection must
-- be closed, never pooled.
function _M.pipeline(sock, commands, n)
    local ok, err = sock:send(commands)
    if not ok then
        return nil, err
    end
    local results = {}
    for i = 1, n do
        local res, message = read(sock)
        if res == nil then
            return nil, message
        end
        results[i] = res == false and { false, message } or res
    end
    return results
end


-- The message of an error reply as pipeline() gives it ({ false, message }),
-- or nil for any other reply.
function _M.reply_error(res)
    if type(res) == "table" and res[1] == false then
        return tostring(res[2])
    end
end


-- Sends one command and reads its reply (only before the subscription): the
-- reply, or nil and an error (an error reply's message, or the socket's).
function _M.call(sock, ...)
    local ok, err = sock:send(command(...))
    if not ok then
        return nil, err
    end
    local res
    res, err = read(sock)
    if res == false then
        return nil, err     -- an error reply: its message
    end
    return res, err
end


return _M
