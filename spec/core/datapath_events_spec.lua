-- Events: one record per translation, success or failure, in map_event,
-- decoded by dp:events():poll() with every field of struct balancing_event
-- (ARCHITECTURE.md, "Data flow" 5; docs/core-api.md, "Events").
local ffi = require("ffi")
local kernel = require("helpers.kernel")

local VIP, PORT = "127.10.0.1", 80
local NODE_IP, NODE_PORT = "127.20.0.1", 30080

local C = ffi.C

local function only_event(env)
  local events = env:events(1, 1)
  assert.equals(1, #events, "exactly one event")
  assert.same({}, env:drain_events(0.05), "and no second one")
  return events[1]
end

local function assert_client_fields(env, event, pid)
  assert.equals(pid, event.pid)
  assert.equals(kernel.u64_text(kernel.core().netns_cookie()), kernel.u64_text(event.netns_cookie))
  assert.equals(kernel.u64_text(env:cgroup_id()), kernel.u64_text(event.cgroup_id))
  assert.is_true(event.is_ipv4)
  assert.is_true(math.abs(event.time - os.time()) < 10, "time is now as Unix time: " .. tostring(event.time))
end

describe("datapath: translation events", function()
  after_each(kernel.close_all)

  it("describes a TCP connect: client, frontend, backend, Service, success", function()
    local env = kernel.open(pending)
    local backends = env:tcp_servers({ "127.0.0.2" })
    env:frontend{ address = VIP, port = PORT, protocol = "TCP", id = 4242, backends = backends }

    local run = env:client_inside("tcp", VIP, PORT, 1)
    local event = only_event(env)

    assert_client_fields(env, event, run.pid)
    local backend_address, backend_port = kernel.split_endpoint(backends[1])
    assert.same({
      service_id = 4242, protocol = 6, protocol_name = "TCP",
      nat_type = C.NAT_TYPE_SERVICE, nat_mode = C.NAT_MODE_CLUSTER_IP, hook = C.HOOK_CONNECT4,
      reason = C.REASON_OK, success = true, redirect_hit_limit = false,
      original_address = VIP, original_port = PORT,
      nat_address = backend_address, nat_port = backend_port,
    }, {
      service_id = event.service_id, protocol = event.protocol, protocol_name = event.protocol_name,
      nat_type = event.nat_type, nat_mode = event.nat_mode, hook = event.hook,
      reason = event.reason, success = event.success, redirect_hit_limit = event.redirect_hit_limit,
      original_address = event.original_address, original_port = event.original_port,
      nat_address = event.nat_address, nat_port = event.nat_port,
    })
    assert.equals(C.EVENT_FLAG_SUCCESS, event.flags)
  end)

  it("describes an unconnected UDP sendto() as a sendmsg4 translation", function()
    local env = kernel.open(pending)
    local backends = env:udp_servers({ "127.0.0.3" })
    env:frontend{ address = VIP, port = 53, protocol = "UDP", id = 53, backends = backends }

    local run = env:client_inside("udp-unconnected", VIP, 53, 1)
    local event = only_event(env)

    assert_client_fields(env, event, run.pid)
    local backend_address, backend_port = kernel.split_endpoint(backends[1])
    assert.equals(17, event.protocol)
    assert.equals("UDP", event.protocol_name)
    assert.equals(C.HOOK_SENDMSG4, event.hook)
    assert.equals(53, event.service_id)
    assert.equals(VIP, event.original_address)
    assert.equals(53, event.original_port)
    assert.equals(backend_address, event.nat_address)
    assert.equals(backend_port, event.nat_port)
    assert.is_true(event.success)
  end)

  it("describes a failure: no translated address, the reason, success false", function()
    local env = kernel.open(pending)
    env:frontend{ address = VIP, port = PORT, protocol = "TCP", id = 99, backends = {} }

    local run = env:client_inside("tcp", VIP, PORT, 1)
    local event = only_event(env)

    assert_client_fields(env, event, run.pid)
    assert.equals(99, event.service_id)
    assert.equals(VIP, event.original_address)
    assert.equals(PORT, event.original_port)
    assert.equals("0.0.0.0", event.nat_address)
    assert.equals(0, event.nat_port)
    assert.equals(C.REASON_NO_BACKEND, event.reason)
    assert.is_false(event.success)
    assert.equals(0, event.flags)
  end)

  it("names a LocalRedirect frontend by its type, mode and the policy's service ID", function()
    local env = kernel.open(pending)
    local backends = env:tcp_servers({ "127.0.0.2" })
    env:frontend{ address = VIP, port = PORT, type = "localRedirect", mode = "address", id = 7001, backends = backends }

    env:client_inside("tcp", VIP, PORT, 1)
    local event = only_event(env)

    assert.equals(C.NAT_TYPE_LOCAL_REDIRECT, event.nat_type)
    assert.equals(C.NAT_MODE_REDIRECT_ADDRESS, event.nat_mode)
    assert.equals(7001, event.service_id)
    assert.is_true(event.success)
  end)

  it("records the node IP a NodePort client dialed as the original address", function()
    local env = kernel.open(pending)
    local backends = env:tcp_servers({ "127.0.0.2" })
    env:node_ip(NODE_IP, 3)
    env:frontend{ address = "*", port = NODE_PORT, mode = "NodePort", id = 303, backends = backends }

    env:client_inside("tcp", NODE_IP, NODE_PORT, 1)
    local event = only_event(env)

    assert.equals(NODE_IP, event.original_address)
    assert.equals(NODE_PORT, event.original_port)
    assert.equals(C.NAT_MODE_NODE_PORT, event.nat_mode)
    assert.equals(303, event.service_id)
    assert.equals(backends[1], event.nat_address .. ":" .. event.nat_port)
  end)

  it("--events failures: the programs send the failures only", function()
    local env = kernel.open(pending)
    env:configure{ events = "failures" }
    local backends = env:tcp_servers({ "127.0.0.2" })
    env:frontend{ address = VIP, port = PORT, protocol = "TCP", id = 7, backends = backends }
    env:frontend{ address = "127.10.0.2", port = PORT, protocol = "TCP", id = 8, backends = {} }

    local served = env:client_inside("tcp", VIP, PORT, 3)
    local refused = env:client_inside("tcp", "127.10.0.2", PORT, 1)

    for _, result in ipairs(served.results) do
      assert.is_string(result.backend) -- translated, with no event
    end
    assert.equals(113, refused.results[1].errno) -- EHOSTUNREACH
    local event = only_event(env)
    assert.is_false(event.success)
    assert.equals(8, event.service_id)
  end)

  it("--events off: the programs send none, and translate as before", function()
    local env = kernel.open(pending)
    env:configure{ events = "off" }
    local backends = env:tcp_servers({ "127.0.0.2" })
    env:frontend{ address = VIP, port = PORT, protocol = "TCP", id = 7, backends = backends }

    local run = env:client_inside("tcp", VIP, PORT, 3)

    for _, result in ipairs(run.results) do
      assert.is_string(result.backend)
    end
    assert.same({}, env:drain_events(0.1))
  end)

  it("sends one event per connect, none for getpeername() or traffic to other addresses", function()
    local env = kernel.open(pending)
    local backends = env:tcp_servers({ "127.0.0.2" })
    env:frontend{ address = VIP, port = PORT, id = 1, backends = backends }

    env:client_inside("tcp", VIP, PORT, 10) -- each calls getpeername() too
    local backend_address, backend_port = kernel.split_endpoint(backends[1])
    env:client_inside("tcp", backend_address, backend_port, 3) -- not a frontend

    local events = env:events(10, 1)
    assert.equals(10, #events)
    assert.same({}, env:drain_events(0.1))
    for _, event in ipairs(events) do
      assert.equals(VIP, event.original_address)
    end
  end)
end)
