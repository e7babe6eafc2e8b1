-- NodePort: a destination that is one of the nodes' IPs (map_node_ip) on a
-- node port resolves as the NodePort entry, the service key with the
-- wildcard address "*" (ARCHITECTURE.md, "Datapath rules").
local kernel = require("helpers.kernel")

local NODE_IP, OTHER_IP, NODE_PORT = "127.20.0.1", "127.20.0.2", 30080

local function node_port_service(env, protocol, backends)
  env:node_ip(NODE_IP, 7)
  env:frontend{ address = "*", port = NODE_PORT, protocol = protocol, mode = "NodePort", id = 103,
    backends = backends }
end

describe("datapath: NodePort", function()
  after_each(kernel.close_all)

  it("sends a TCP connect to a node IP on the node port to a backend, and getpeername() shows the node IP", function()
    local env = kernel.open(pending)
    local backends = env:tcp_servers({ "127.0.0.2", "127.0.0.3" })
    node_port_service(env, "TCP", backends)

    local run = env:client_inside("tcp", NODE_IP, NODE_PORT, 20)

    assert.same({}, kernel.failures(run.results))
    for _, result in ipairs(run.results) do
      assert.is_true(result.backend == backends[1] or result.backend == backends[2], tostring(result.backend))
      assert.equals(NODE_IP .. ":" .. NODE_PORT, result.peer)
    end
  end)

  it("answers a UDP datagram to a node IP on the node port from that node IP", function()
    local env = kernel.open(pending)
    local backends = env:udp_servers({ "127.0.0.2" })
    node_port_service(env, "UDP", backends)

    local run = env:client_inside("udp-unconnected", NODE_IP, NODE_PORT, 2)

    assert.same({}, kernel.failures(run.results))
    assert.same({ backends[1] }, kernel.distinct(run.results, "backend"))
    assert.same({ NODE_IP .. ":" .. NODE_PORT }, kernel.distinct(run.results, "source"))
  end)

  it("leaves the node port on an address that is no node's IP untranslated", function()
    local env = kernel.open(pending)
    node_port_service(env, "TCP", env:tcp_servers({ "127.0.0.2" }))

    local run = env:client_inside("tcp", OTHER_IP, NODE_PORT, 1)

    assert.same({ { errno = kernel.ECONNREFUSED, step = "connect" } }, run.results)
  end)
end)
