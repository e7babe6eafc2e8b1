-- Reverse translation: map_nat_record maps (socket cookie, backend) to the
-- frontend and its owner; recvmsg4 and getpeername4 restore the frontend only
-- after checking that it still exists for that owner, and delete a stale
-- record (ARCHITECTURE.md, "Datapath rules").
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
      assert.equals(1, #env:map("map_nat_record"):dump(), "the connect left one reverse record")
      env:delete_frontend(key)
    end)

    assert.equals(backends[1], run.results[2].peer)
    assert.equals(0, #env:map("map_nat_record"):dump(), "the stale record is deleted")
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
