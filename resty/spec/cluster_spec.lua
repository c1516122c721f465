-- resty.shared_session.cluster: key slots (CRC16 and hash tags), the slot
-- map from CLUSTER SLOTS, MOVED and ASK, the refresh limit. The slots are
-- also checked against a real cluster's CLUSTER KEYSLOT in t/cluster.spec.ts.
describe("resty.shared_session.cluster", function()
  local restore, cluster

  setup(function()
    restore = require("ngx_stub").install()
    cluster = require "resty.shared_session.cluster"
  end)

  teardown(function()
    restore()
  end)

  it("computes CRC16-XMODEM (the standard check value)", function()
    assert.equal(0x31C3, cluster.crc16("123456789"))
    assert.equal(0, cluster.crc16(""))
  end)

  it("hashes the hash tag only, when there is a non-empty one", function()
    assert.equal(cluster.slot("abc"), cluster.slot("x:{abc}:data"))
    assert.equal(cluster.slot("abc"), cluster.slot("y:{abc}:groups"))
    assert.equal(cluster.slot("abc"), cluster.slot("{abc}{def}"))
    -- "{}" is no tag: the whole key counts.
    assert.equal(cluster.crc16("x{}{abc}") % 16384, cluster.slot("x{}{abc}"))
    assert.equal(cluster.crc16("x{abc") % 16384, cluster.slot("x{abc"))
  end)

  it("gives slots from 0 to 16383", function()
    for i = 1, 2000 do
      local s = cluster.slot("k" .. i)
      assert.is_true(s >= 0 and s < 16384)
    end
  end)

  it("reads MOVED and ASK, and nothing else", function()
    assert.same({ "MOVED", 3999, "127.0.0.1", 6381 },
                { cluster.redirection("MOVED 3999 127.0.0.1:6381") })
    assert.same({ "ASK", 12, "10.0.0.2", 7000 },
                { cluster.redirection("ASK 12 10.0.0.2:7000") })
    assert.is_nil(cluster.redirection("ERR wrong number of arguments"))
    assert.is_nil(cluster.redirection("CLUSTERDOWN The cluster is down"))
    assert.is_nil(cluster.redirection(nil))
  end)

  local function make_node(host, port) return { host = host, port = port } end

  it("maps every slot to its primary from CLUSTER SLOTS, sharing node tables", function()
    local map = assert(cluster.map_from_slots({
      { 0, 5460, { "127.0.0.1", 7000, "a" }, { "127.0.0.1", 7003, "d" } },
      { 5461, 10922, { "127.0.0.1", 7001, "b" } },
      { 10923, 16383, { "127.0.0.1", 7002, "c" } },
    }, make_node))
    assert.equal(7000, cluster.node_for(map, 0).port)
    assert.equal(7000, cluster.node_for(map, 5460).port)
    assert.equal(7001, cluster.node_for(map, 5461).port)
    assert.equal(7002, cluster.node_for(map, 16383).port)
    assert.equal(cluster.node_for(map, 1), cluster.node_for(map, 2))

    cluster.moved(map, 5460, "127.0.0.1", 7001, make_node)
    assert.equal(7001, cluster.node_for(map, 5460).port)
    assert.equal(cluster.node_for(map, 5461), cluster.node_for(map, 5460))
  end)

  it("names the primaries that serve a slot, the same whatever the order of the ranges", function()
    local a = assert(cluster.map_from_slots({
      { 0, 5460, { "127.0.0.1", 7000, "a" }, { "127.0.0.1", 7003, "d" } },
      { 5461, 10922, { "127.0.0.1", 7001, "b" } },
      { 10923, 16383, { "127.0.0.1", 7002, "c" } },
    }, make_node))
    local list, key = cluster.primaries(a)
    assert.same({ 7000, 7001, 7002 }, { list[1].port, list[2].port, list[3].port })
    assert.equal(3, #list)
    assert.equal("127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002", key)
    local b = assert(cluster.map_from_slots({
      { 10923, 16383, { "127.0.0.1", 7002 } },
      { 0, 10922, { "127.0.0.1", 7000 } },
      { 100, 200, { "127.0.0.1", 7001 } },
    }, make_node))
    assert.equal(key, select(2, cluster.primaries(b)))
    -- A failover: 7003 serves 7000's slots.
    local c = assert(cluster.map_from_slots({
      { 0, 5460, { "127.0.0.1", 7003 } },
      { 5461, 10922, { "127.0.0.1", 7001 } },
      { 10923, 16383, { "127.0.0.1", 7002 } },
    }, make_node))
    assert.equal("127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003", select(2, cluster.primaries(c)))
    -- A node that lost its last slot to a MOVED is no primary any more.
    local left = assert(cluster.map_from_slots({ { 0, 0, { "h", 1 } }, { 1, 16383, { "h", 2 } } },
                                               make_node))
    cluster.moved(left, 0, "h", 2, make_node)
    assert.equal("h:2", select(2, cluster.primaries(left)))
  end)

  it("leaves unserved slots unmapped, and refuses what is not CLUSTER SLOTS", function()
    local map = assert(cluster.map_from_slots({ { 0, 100, { "h", 1 } } }, make_node))
    assert.is_nil(cluster.node_for(map, 101))
    assert.is_nil((cluster.map_from_slots({}, make_node)))
    assert.is_nil((cluster.map_from_slots("ERR", make_node)))
    assert.is_nil((cluster.map_from_slots({ { "x" } }, make_node)))
  end)

  it("lets one full refresh run per interval", function()
    local state = {}
    assert.is_true(cluster.refresh_due(state))
    assert.is_false(cluster.refresh_due(state))
    state.refreshed = state.refreshed - cluster.REFRESH_INTERVAL - 0.01
    assert.is_true(cluster.refresh_due(state))
    state.refreshed, state.refreshing = nil, true
    assert.is_false(cluster.refresh_due(state))
  end)
end)
