-- Per-owner translation counters: every translation that matched a frontend
-- adds one to map_translations under (service ID, type, reason), on the CPU
-- it ran on, whatever --events says (CONTRACTS.md,
-- balancing_translations_total). Real clients, real programs.
local ffi = require("ffi")
local kernel = require("helpers.kernel")
local translation_counters = require("balancing.translation_counters")

local PORT = 80
local SERVING_ID, EMPTY_ID, LOCAL_ID = 601, 602, 603

-- "id/type/result" -> count, for exact comparison.
local function counts(env)
  local list = assert(translation_counters.read(env:map("map_translations")))
  local out = {}
  for _, counter in ipairs(list) do
    out[string.format("%d/%d/%s", counter.service_id, counter.nat_type,
      translation_counters.result_name(counter.reason))] = counter.count
  end
  return out
end

describe("datapath: per-owner translation counters", function()
  after_each(kernel.close_all)

  it("counts translations and EHOSTUNREACH failures per service ID and reason, with events off", function()
    local env = kernel.open(pending)
    env:configure{ events = "off" }
    local backends = env:tcp_servers({ "127.0.0.1", "127.0.0.2" })
    env:frontend{ address = "127.10.0.1", port = PORT, id = SERVING_ID, backends = backends }
    env:frontend{ address = "127.10.0.2", port = PORT, id = EMPTY_ID, backends = {} }
    env:frontend{ address = "127.10.0.3", port = PORT, id = LOCAL_ID, backends = backends, local_only = true }

    local served = env:client_inside("tcp", "127.10.0.1", PORT, 7)
    local empty = env:client_inside("tcp", "127.10.0.2", PORT, 3)
    local no_local = env:client_inside("tcp", "127.10.0.3", PORT, 2)

    assert.same({}, kernel.failures(served.results))
    for _, result in ipairs(empty.results) do
      assert.equals(kernel.EHOSTUNREACH, result.errno)
    end
    for _, result in ipairs(no_local.results) do
      assert.equals(kernel.EHOSTUNREACH, result.errno)
    end
    local service = ffi.C.NAT_TYPE_SERVICE
    assert.same({
      [SERVING_ID .. "/" .. service .. "/ok"] = 7,
      [EMPTY_ID .. "/" .. service .. "/no backend"] = 3,
      [LOCAL_ID .. "/" .. service .. "/no local backend"] = 2,
    }, counts(env))
    assert.same({}, env:drain_events(0.1), "events off: the ring stays empty, the counters count")
  end)

  it("counts a LocalRedirect and the Service behind it under their own IDs and types", function()
    local env = kernel.open(pending)
    local servers = env:tcp_servers({ "127.0.0.1", "127.0.0.2" })
    env:frontend{ address = "127.10.0.1", port = PORT, type = "service", id = SERVING_ID, backends = { servers[1] } }
    env:frontend{ address = "127.10.0.1", port = PORT, type = "localRedirect", mode = "address", id = LOCAL_ID,
      backends = { servers[2] } }

    local run = env:client_inside("tcp", "127.10.0.1", PORT, 4)

    assert.same({}, kernel.failures(run.results))
    assert.same({ [LOCAL_ID .. "/" .. ffi.C.NAT_TYPE_LOCAL_REDIRECT .. "/ok"] = 4 }, counts(env))
  end)

  it("counts nothing for a connect to an address that is no frontend", function()
    local env = kernel.open(pending)
    local backends = env:tcp_servers({ "127.0.0.1" })
    local address, port = kernel.split_endpoint(backends[1])

    local run = env:client_inside("tcp", address, port, 3)

    assert.same({}, kernel.failures(run.results))
    assert.same({}, counts(env))
  end)

  it("counts nothing when loaded with count_translations = false (the benchmark's baseline)", function()
    local env = kernel.open(pending, { count_translations = false })
    local backends = env:tcp_servers({ "127.0.0.1" })
    env:frontend{ address = "127.10.0.1", port = PORT, id = SERVING_ID, backends = backends }

    local run = env:client_inside("tcp", "127.10.0.1", PORT, 3)

    assert.same({}, kernel.failures(run.results))
    assert.equals(3, #env:events(3, 1), "translated all the same")
    assert.same({}, counts(env))
  end)
end)
