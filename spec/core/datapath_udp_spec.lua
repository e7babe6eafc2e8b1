-- UDP through a ClusterIP frontend, on the real kernel with real clients:
-- sendmsg4 (unconnected) and connect4 (connected) translate, recvmsg4 and
-- getpeername4 show the frontend, and one socket keeps one backend
-- (ARCHITECTURE.md, "Datapath rules").
local kernel = require("helpers.kernel")

local VIP, PORT = "127.10.0.2", 5353
local DNS_VIP, DNS_PORT = "127.10.0.53", 53

local function clusterip_with_three_backends(env)
  local backends = env:udp_servers({ "127.0.0.1", "127.0.0.2", "127.0.0.3" })
  env:frontend{ address = VIP, port = PORT, protocol = "UDP", id = 102, backends = backends }
  return backends
end

local function is_one_of(list, value)
  for _, item in ipairs(list) do
    if item == value then
      return true
    end
  end
  return false
end

describe("datapath: UDP to a ClusterIP frontend", function()
  after_each(kernel.close_all)

  it("delivers an unconnected sendto() to a backend and shows the frontend as the reply's source", function()
    local env = kernel.open(pending)
    local backends = clusterip_with_three_backends(env)

    local run = env:client_inside("udp-unconnected", VIP, PORT, 3)

    assert.same({}, kernel.failures(run.results))
    for _, result in ipairs(run.results) do
      assert.is_true(is_one_of(backends, result.backend), "reached " .. tostring(result.backend))
      assert.equals(VIP .. ":" .. PORT, result.source)
    end
  end)

  it("delivers a connected socket's datagrams to a backend and shows the frontend as source and peer", function()
    local env = kernel.open(pending)
    local backends = clusterip_with_three_backends(env)

    local run = env:client_inside("udp-connected", VIP, PORT, 3)

    assert.same({}, kernel.failures(run.results))
    for _, result in ipairs(run.results) do
      assert.is_true(is_one_of(backends, result.backend), "reached " .. tostring(result.backend))
      assert.equals(VIP .. ":" .. PORT, result.source)
      assert.equals(VIP .. ":" .. PORT, result.peer)
    end
  end)

  it("sends every datagram of one unconnected socket to the same backend", function()
    local env = kernel.open(pending)
    clusterip_with_three_backends(env)

    local run = env:client_inside("udp-unconnected", VIP, PORT, 20)

    assert.same({}, kernel.failures(run.results))
    assert.equals(20, #run.results)
    assert.equals(1, #kernel.distinct(run.results, "backend"))
  end)

  it("spreads different sockets over the backends", function()
    local env = kernel.open(pending)
    clusterip_with_three_backends(env)

    -- 60 sockets: all on one backend of three has a chance of 3^-59.
    local run = env:client_inside("udp-sockets", VIP, PORT, 60)

    assert.same({}, kernel.failures(run.results))
    assert.is_true(#kernel.distinct(run.results, "backend") >= 2,
      "60 sockets all reached " .. tostring(run.results[1].backend))
  end)

  it("answers dig @frontend from a dnsmasq backend", function()
    local env = kernel.open(pending)
    local dns = env:dnsmasq("127.0.0.4")
    env:frontend{ address = DNS_VIP, port = DNS_PORT, protocol = "UDP", id = 153, backends = { dns } }

    local output, ok = env:dig_inside(DNS_VIP, DNS_PORT, "example.test")

    assert.is_true(ok, output)
    assert.matches("status: NOERROR", output)
    assert.matches("example%.test%.%s+%d+%s+IN%s+A%s+1%.2%.3%.4", output)
    -- dig names the server it asked; a reply from the backend's own address
    -- would have been refused as coming from an unexpected source.
    assert.matches("SERVER: 127%.10%.0%.53#53", output)
  end)

  it("leaves a datagram from a process outside the cgroup untranslated", function()
    local env = kernel.open(pending)
    clusterip_with_three_backends(env)

    local run = kernel.client_outside("udp-connected", VIP, PORT, 1)

    -- Nothing listens on the virtual address: the ICMP port unreachable
    -- surfaces as ECONNREFUSED on the connected socket.
    assert.same(kernel.ECONNREFUSED, run.results[1].errno)
    assert.same({}, env:drain_events(0.1))
  end)
end)
