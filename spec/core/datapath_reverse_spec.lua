-- Reverse translation: a record maps (socket cookie, backend) to the
-- frontend and its owner — a TCP connection's in its map_nat_record_tcp
-- slot, a UDP socket's in the LRU map_nat_record; recvmsg4 and getpeername4
-- restore the frontend only after checking that it still exists for that
-- owner, and delete a stale record (ARCHITECTURE.md, "Datapath rules").
local abi = require("balancing.abi")
local ffi = require("ffi")
local bpftool_write = require("helpers.bpftool_write")
local kernel = require("helpers.kernel")

local VIP, TCP_PORT, UDP_PORT = "127.10.0.1", 80, 5353

describe("datapath: reverse translation", function()
  after_each(kernel.close_all)

  it("keeps showing the frontend in getpeername() while the frontend lives", function()
    local env = kernel.open(pending)
    env:frontend{ address = VIP, port = TCP_PORT, id = 120, backends = env:tcp_servers({ "127.0.0.2" }) }

    local run = env:client_inside_pausing("tcp-pause", VIP, TCP_PORT, function() end)

    assert.equals(VIP .. ":" .. TCP_PORT, run.results[1].peer)
    assert.equals(VIP .. ":" .. TCP_PORT, run.results[2].peer)
  end)

  it("shows the backend's own address in getpeername() once the frontend is gone, and deletes the record", function()
    local env = kernel.open(pending)
    local backends = env:tcp_servers({ "127.0.0.2" })
    local key = env:frontend{ address = VIP, port = TCP_PORT, id = 120, backends = backends }

    local run = env:client_inside_pausing("tcp-pause", VIP, TCP_PORT, function(first)
      assert.equals(VIP .. ":" .. TCP_PORT, first.peer)
      local records = env:tcp_nat_records()
      assert.equals(1, #records, "the connect filled one TCP slot")
      assert.equals(first.cookie, records[1].socketCookie)
      assert.equals(backends[1], records[1].backend .. ":" .. records[1].backendPort)
      assert.equals(VIP, records[1].dialed)
      assert.equals(120, records[1].id)
      assert.equals(0, #env:map("map_nat_record"):dump(), "a TCP connect writes nothing in the LRU")
      env:delete_frontend(key)
    end)

    assert.equals(backends[1], run.results[2].peer)
    assert.same({}, env:tcp_nat_records(), "the stale record is deleted")
  end)

  it("gives an older connection whose slot a newer socket took its backend's address, never the newer frontend",
    function()
      -- one slot: every TCP connect takes the slot of the one before
      local env = kernel.open(pending, { max_tcp_nat_records = 1 })
      local backends = env:tcp_servers({ "127.0.0.2" })
      env:frontend{ address = VIP, port = TCP_PORT, id = 120, backends = backends }
      env:frontend{ address = "127.10.0.2", port = TCP_PORT, id = 121, backends = backends }

      local newer
      local run = env:client_inside_pausing("tcp-pause", VIP, TCP_PORT, function(first)
        assert.equals(VIP .. ":" .. TCP_PORT, first.peer)
        newer = env:client_inside("tcp", "127.10.0.2", TCP_PORT, 1)
        local records = env:tcp_nat_records()
        assert.equals(1, #records)
        assert.equals("127.10.0.2", records[1].dialed, "the newer connect took the slot")
      end)

      assert.equals("127.10.0.2:" .. TCP_PORT, newer.results[1].peer)
      assert.equals(backends[1], run.results[2].peer)
    end)

  it("restores a TCP connection from a map_nat_record entry, as a datapath before map_nat_record_tcp wrote it",
    function()
      local env = kernel.open(pending, { max_tcp_nat_records = 1 })
      local backends = env:tcp_servers({ "127.0.0.2" })
      env:frontend{ address = VIP, port = TCP_PORT, id = 120, backends = backends }
      local backend_address, backend_port = backends[1]:match("^(.+):(%d+)$")

      local run = env:client_inside_pausing("tcp-pause", VIP, TCP_PORT, function(first)
        -- the record moved from the slot to the LRU, as an upgrade finds it
        bpftool_write.update(env.bpffs .. "/map_nat_record_tcp", ffi.new("__u32[1]", 0),
          ffi.new("struct nat_record_tcp"))
        assert.same({}, env:tcp_nat_records())
        local cookie = ffi.new("uint64_t", 0)
        for digit in first.cookie:gmatch("%d") do
          cookie = cookie * 10 + tonumber(digit)
        end
        local record_key = ffi.new("struct nat_record_key", { socket_cookie = cookie,
          address = abi.ipv4_to_u32(backend_address), port = abi.htons(tonumber(backend_port)) })
        local record = ffi.new("struct nat_record_value", { frontend = abi.service_key(VIP, TCP_PORT, "TCP", "service"),
          dialed_address = abi.ipv4_to_u32(VIP), service_id = 120 })
        bpftool_write.update(env.bpffs .. "/map_nat_record", record_key, record)
      end)

      assert.equals(VIP .. ":" .. TCP_PORT, run.results[2].peer)
    end)

  it("stops restoring a frontend that now belongs to another owner", function()
    local env = kernel.open(pending)
    local backends = env:tcp_servers({ "127.0.0.2" })
    local key = env:frontend{ address = VIP, port = TCP_PORT, id = 120, backends = backends }

    local run = env:client_inside_pausing("tcp-pause", VIP, TCP_PORT, function()
      env:update_frontend(key, { id = 121 })
    end)

    assert.equals(VIP .. ":" .. TCP_PORT, run.results[1].peer)
    assert.equals(backends[1], run.results[2].peer)
  end)

  it("shows the frontend as the source of a later reply from the same backend to the same socket", function()
    local env = kernel.open(pending)
    env:frontend{ address = VIP, port = UDP_PORT, protocol = "UDP", id = 122,
      backends = env:udp_servers({ "127.0.0.2" }) }

    local run = env:client_inside_pausing("udp-pause", VIP, UDP_PORT, function() end)

    assert.same({}, kernel.failures(run.results))
    assert.equals(VIP .. ":" .. UDP_PORT, run.results[1].source)
    assert.equals(VIP .. ":" .. UDP_PORT, run.results[2].source)
  end)

  it("shows a UDP reply's true source once the frontend is gone", function()
    local env = kernel.open(pending)
    local backends = env:udp_servers({ "127.0.0.2" })
    local key = env:frontend{ address = VIP, port = UDP_PORT, protocol = "UDP", id = 122, backends = backends }

    local run = env:client_inside_pausing("udp-pause", VIP, UDP_PORT, function(first)
      assert.equals(VIP .. ":" .. UDP_PORT, first.source)
      env:delete_frontend(key)
    end)

    assert.same({}, kernel.failures(run.results))
    assert.equals(backends[1], run.results[2].source)
  end)
end)
