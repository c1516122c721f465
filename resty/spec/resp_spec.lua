-- resty.shared_session.resp: the RESP the revocation subscriber speaks,
-- against a fake cosocket.
local fake_socket = require "fake_socket"

describe("resty.shared_session.resp", function()
  local stub, restore, resp

  setup(function()
    stub = require "ngx_stub"
    restore = stub.install()
    resp = require "resty.shared_session.resp"
  end)

  teardown(function()
    restore()
  end)

  describe("command", function()
    it("encodes an array of bulk strings", function()
      assert.equal("*1\r\n$4\r\nPING\r\n", resp.command("PING"))
      assert.equal("*2\r\n$9\r\nSUBSCRIBE\r\n$14\r\napp:invalidate\r\n",
                   resp.command("SUBSCRIBE", "app:invalidate"))
    end)

    it("counts bytes, and sends any byte as it is", function()
      assert.equal("*2\r\n$4\r\nAUTH\r\n$6\r\np\r\n\0é\r\n", resp.command("AUTH", "p\r\n\0é"))
      assert.equal("*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", resp.command("ECHO", ""))
      assert.equal("*2\r\n$4\r\nECHO\r\n$2\r\n42\r\n", resp.command("ECHO", 42))
    end)
  end)

  describe("read", function()
    local function read(bytes)
      return resp.read(fake_socket.new(bytes))
    end

    it("reads a status, an integer and an error reply", function()
      assert.equal("OK", read("+OK\r\n"))
      assert.equal("PONG", read("+PONG\r\n"))
      assert.equal(3, read(":3\r\n"))
      local res, err = read("-ERR unknown command\r\n")
      assert.is_false(res)
      assert.equal("ERR unknown command", err)
    end)

    it("reads bulk strings, empty and binary ones too", function()
      assert.equal("hello", read("$5\r\nhello\r\n"))
      assert.equal("", read("$0\r\n\r\n"))
      assert.equal("a\r\nb", read("$4\r\na\r\nb\r\n"))
    end)

    it("reads a null bulk string or array as ngx.null", function()
      assert.equal(stub.null, read("$-1\r\n"))
      assert.equal(stub.null, read("*-1\r\n"))
    end)

    it("reads arrays, nested ones too", function()
      assert.same({ "message", "app:invalidate", "3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f" },
                  read("*3\r\n$7\r\nmessage\r\n$14\r\napp:invalidate\r\n"
                       .. "$36\r\n3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f\r\n"))
      assert.same({ "subscribe", "app:invalidate", 1 },
                  read("*3\r\n$9\r\nsubscribe\r\n$14\r\napp:invalidate\r\n:1\r\n"))
      assert.same({ { 1, "a" }, {}, "b" },
                  read("*3\r\n*2\r\n:1\r\n$1\r\na\r\n*0\r\n+b\r\n"))
    end)

    it("reads one reply at a time", function()
      local sock = fake_socket.new("+PONG\r\n:7\r\n$1\r\nx\r\n")
      assert.equal("PONG", resp.read(sock))
      assert.equal(7, resp.read(sock))
      assert.equal("x", resp.read(sock))
      assert.same({ nil, "closed" }, { resp.read(sock) })
    end)

    it("says a reply is bad when its type or length is unknown", function()
      assert.same({ nil, "bad reply from redis" }, { read("?what\r\n") })
      assert.same({ nil, "bad reply from redis" }, { read("$x\r\n") })
      assert.same({ nil, "bad reply from redis" }, { read("*\r\n") })
      assert.same({ nil, "bad reply from redis" }, { read("\r\n") })
    end)

    it("returns the socket's error, even in the middle of a reply", function()
      assert.same({ nil, "closed" }, { read("") })
      assert.same({ nil, "closed" }, { read("$5\r\nhel") })
      assert.same({ nil, "closed" }, { read("*3\r\n$7\r\nmessage\r\n") })
      local sock = fake_socket.new("")
      sock.eof_err = "timeout"
      assert.same({ nil, "timeout" }, { resp.read(sock) })
    end)
  end)

  describe("call", function()
    it("sends one command and returns its reply", function()
      local sock = fake_socket.new("+OK\r\n")
      assert.equal("OK", resp.call(sock, "AUTH", "pw"))
      assert.same({ "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n" }, sock.sent)
    end)

    it("returns nil and the message of an error reply", function()
      local sock = fake_socket.new("-WRONGPASS invalid password\r\n")
      assert.same({ nil, "WRONGPASS invalid password" }, { resp.call(sock, "AUTH", "x") })
    end)

    it("returns nil and the socket's error when it cannot send or read", function()
      local sock = fake_socket.new("+OK\r\n")
      sock.send_err = "broken pipe"
      assert.same({ nil, "broken pipe" }, { resp.call(sock, "PING") })
      assert.same({ nil, "closed" }, { resp.call(fake_socket.new(""), "PING") })
    end)
  end)

  describe("pipeline", function()
    it("sends the commands in one write, reads their replies (errors: { false, message })",
       function()
      local sock = fake_socket.new(":1\r\n-ERR no\r\n$-1\r\n")
      assert.same({ 1, { false, "ERR no" }, stub.null }, resp.pipeline(sock, "x", 3))
      assert.same({ "x" }, sock.sent)
    end)

    it("returns nil and the socket's error when it cannot send or read every reply", function()
      assert.same({ nil, "closed" }, { resp.pipeline(fake_socket.new(":1\r\n"), "x", 2) })
      local sock = fake_socket.new(":1\r\n")
      sock.send_err = "broken pipe"
      assert.same({ nil, "broken pipe" }, { resp.pipeline(sock, "x", 1) })
    end)
  end)
end)
