-- Local-only frontends and frontends without a usable backend: traffic
-- policy Local uses the first local_count slots; no usable backend fails the
-- connect or send at once with EHOSTUNREACH (never EPERM, never a packet to
-- the virtual address) and the event records the reason
-- (ARCHITECTURE.md, "Datapath rules").
local bpftool_write = require("helpers.bpftool_write")
local ffi = require("ffi")
local kernel = require("helpers.kernel")

local VIP, PORT = "127.10.0.1", 80

local function assert_one_failure_event(env, protocol, reason)
  local events = env:events(1, 1)
  assert.equals(1, #events, "one failure event")
  assert.is_false(events[1].success)
  assert.equals(reason, events[1].reason)
  assert.equals(protocol, events[1].protocol)
  assert.equals(VIP, events[1].original_address)
  assert.equals(PORT, events[1].original_port)
end

describe("datapath: local-only frontends", function()
  after_each(kernel.close_all)

  it("uses only the first local_count slots of a local-only frontend", function()
    local env = kernel.open(pending)
    local backends = env:tcp_servers({ "127.0.0.1", "127.0.0.2", "127.0.0.3" })
    env:frontend{ address = VIP, port = PORT, id = 105, backends = backends, local_only = true, local_count = 2 }

    local run = env:client_inside("tcp", VIP, PORT, 40)

    assert.same({}, kernel.failures(run.results))
    -- 40 random picks of two slots miss one of them with a chance of 2^-39.
    assert.same({ backends[1], backends[2] }, kernel.distinct(run.results, "backend"))
  end)

  it("uses every slot of a frontend that is not local-only, whatever its local_count", function()
    local env = kernel.open(pending)
    local backends = env:tcp_servers({ "127.0.0.1", "127.0.0.2", "127.0.0.3" })
    env:frontend{ address = VIP, port = PORT, id = 105, backends = backends, local_count = 1 }

    local run = env:client_inside("tcp", VIP, PORT, 60)

    assert.same({}, kernel.failures(run.results))
    assert.same(backends, kernel.distinct(run.results, "backend"))
  end)
end)

describe("datapath: a frontend without a usable backend", function()
  after_each(kernel.close_all)

  it("fails a TCP connect at once with EHOSTUNREACH and reports REASON_NO_BACKEND", function()
    local env = kernel.open(pending)
    env:frontend{ address = VIP, port = PORT, protocol = "TCP", id = 106, backends = {} }

    local run = env:client_inside("tcp", VIP, PORT, 1, "--timed")

    assert.same({ { errno = kernel.EHOSTUNREACH, step = "connect" } }, run.results)
    -- (timed in the client: its start on a loaded machine under ASan is not the connect's)
    assert.is_true(run.seconds < 1.5, "the connect failed at once, not after a timeout: " .. run.seconds .. " s")
    assert_one_failure_event(env, 6, ffi.C.REASON_NO_BACKEND)
  end)

  it("fails a UDP sendto() at once with EHOSTUNREACH and reports REASON_NO_BACKEND", function()
    local env = kernel.open(pending)
    env:frontend{ address = VIP, port = PORT, protocol = "UDP", id = 106, backends = {} }

    local run = env:client_inside("udp-unconnected", VIP, PORT, 1)

    assert.same({ { errno = kernel.EHOSTUNREACH, step = "send" } }, run.results)
    assert_one_failure_event(env, 17, ffi.C.REASON_NO_BACKEND)
  end)

  it("fails a connected UDP socket's connect() with EHOSTUNREACH", function()
    local env = kernel.open(pending)
    env:frontend{ address = VIP, port = PORT, protocol = "UDP", id = 106, backends = {} }

    local run = env:client_inside("udp-connected", VIP, PORT, 1)

    assert.same({ { errno = kernel.EHOSTUNREACH, step = "connect" } }, run.results)
  end)

  it("fails a frontend whose slot below the count is absent with EHOSTUNREACH and REASON_BACKEND_MISSING", function()
    local env = kernel.open(pending)
    local key = env:frontend{ address = VIP, port = PORT, id = 108, backends = env:tcp_servers({ "127.0.0.2" }) }
    -- count 1, slot 0 gone: a state the applier never leaves (its write order
    -- forbids it), made by a writer outside balancing.core
    bpftool_write.delete(env.bpffs .. "/map_backend", kernel.backend_key(key, 0))
    assert.is_false(env:map("map_backend"):lookup(kernel.backend_key(key, 0)))

    local run = env:client_inside("tcp", VIP, PORT, 1)

    assert.same({ { errno = kernel.EHOSTUNREACH, step = "connect" } }, run.results)
    assert_one_failure_event(env, 6, ffi.C.REASON_BACKEND_MISSING)
  end)

  it("fails a local-only frontend with no local backend and reports REASON_NO_LOCAL_BACKEND", function()
    local env = kernel.open(pending)
    local backends = env:tcp_servers({ "127.0.0.2", "127.0.0.3" })
    env:frontend{ address = VIP, port = PORT, id = 107, backends = backends, local_only = true, local_count = 0 }

    local run = env:client_inside("tcp", VIP, PORT, 1)

    assert.same({ { errno = kernel.EHOSTUNREACH, step = "connect" } }, run.results)
    assert_one_failure_event(env, 6, ffi.C.REASON_NO_LOCAL_BACKEND)
  end)
end)
