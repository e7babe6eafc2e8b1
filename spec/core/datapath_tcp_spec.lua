-- TCP through a ClusterIP frontend, on the real kernel with real clients:
-- connect4 picks a random backend slot and getpeername4 shows the frontend
-- (ARCHITECTURE.md, "Datapath rules").
local kernel = require("helpers.kernel")

local VIP, PORT = "127.10.0.1", 80
local CONNECTS = 300

local function clusterip_with_three_backends(env)
  local backends = env:tcp_servers({ "127.0.0.1", "127.0.0.2", "127.0.0.3" })
  env:frontend{ address = VIP, port = PORT, protocol = "TCP", id = 101, backends = backends }
  return backends
end

describe("datapath: TCP connect to a ClusterIP frontend", function()
  after_each(kernel.close_all)

  it("translates every connect from inside the cgroup to one of the frontend's backends", function()
    local env = kernel.open(pending)
    local backends = clusterip_with_three_backends(env)

    local run = env:client_inside("tcp", VIP, PORT, CONNECTS)

    assert.same({}, kernel.failures(run.results))
    assert.equals(CONNECTS, #run.results)
    for _, reached in ipairs(kernel.distinct(run.results, "backend")) do
      assert.is_true(reached == backends[1] or reached == backends[2] or reached == backends[3],
        "reached " .. reached .. ", which is not a backend")
    end
  end)

  it("spreads connects over every backend, each getting at least 20 %", function()
    local env = kernel.open(pending)
    local backends = clusterip_with_three_backends(env)

    local counts = kernel.count_by_backend(env:client_inside("tcp", VIP, PORT, CONNECTS).results)

    for _, backend in ipairs(backends) do
      assert.is_true((counts[backend] or 0) >= CONNECTS * 0.2,
        backend .. " got " .. tostring(counts[backend] or 0) .. " of " .. CONNECTS)
    end
  end)

  it("shows the client the frontend it dialed in getpeername()", function()
    local env = kernel.open(pending)
    clusterip_with_three_backends(env)

    local run = env:client_inside("tcp", VIP, PORT, 30)

    assert.same({}, kernel.failures(run.results))
    assert.same({ VIP .. ":" .. PORT }, kernel.distinct(run.results, "peer"))
  end)

  it("leaves a connect from a process outside the cgroup untranslated", function()
    local env = kernel.open(pending)
    clusterip_with_three_backends(env)

    local run = kernel.client_outside("tcp", VIP, PORT, 1)

    -- Nothing listens on the virtual address itself.
    assert.same({ { errno = kernel.ECONNREFUSED, step = "connect" } }, run.results)
    assert.same({}, env:drain_events(0.1))
  end)
end)
