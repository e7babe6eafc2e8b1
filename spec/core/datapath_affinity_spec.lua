-- Session affinity: per client network namespace (its netns cookie) and
-- frontend, with the Service's timeout; a record whose backend is gone is not
-- used (ARCHITECTURE.md, "Datapath rules"). Every client here runs in the
-- spec's own network namespace, so they all are one affinity client.
local bit = require("bit")
local ffi = require("ffi")
local kernel = require("helpers.kernel")

local VIP, PORT = "127.10.0.1", 80
local TIMEOUT_SECONDS = 2

local function affinity_hit(event)
  return bit.band(event.flags, ffi.C.EVENT_FLAG_AFFINITY_HIT) ~= 0
end

local function one_connect(env, address)
  local result = env:client_inside("tcp", address, PORT, 1).results[1]
  assert.is_nil(result.errno, "connect to " .. address .. " failed with errno " .. tostring(result.errno))
  local events = env:events(1, 1)
  assert.equals(1, #events, "one event per connect")
  return result.backend, events[1]
end

-- One client process connecting `count` times to each of the comma-separated
-- hosts in turn; each connect with its backend and its event, in order.
local function connects_with_events(env, hosts, count)
  local run = env:client_inside("tcp", hosts, PORT, count)
  assert.same({}, kernel.failures(run.results))
  local events = env:events(#run.results, 2)
  assert.equals(#run.results, #events, "one event per connect")
  local connects = {}
  for i, result in ipairs(run.results) do
    assert.equals(result.peer, events[i].original_address .. ":" .. events[i].original_port, "events in connect order")
    connects[i] = { backend = result.backend, event = events[i] }
  end
  return connects
end

describe("datapath: session affinity", function()
  after_each(kernel.close_all)

  it("keeps one client network namespace on its backend across 50 connects", function()
    local env = kernel.open(pending)
    local backends = env:tcp_servers({ "127.0.0.1", "127.0.0.2", "127.0.0.3" })
    env:frontend{ address = VIP, port = PORT, id = 104, backends = backends, affinity_seconds = TIMEOUT_SECONDS }

    local first = env:client_inside("tcp", VIP, PORT, 50)
    local second = env:client_inside("tcp", VIP, PORT, 10) -- another process, same netns

    assert.same({}, kernel.failures(first.results))
    assert.same({}, kernel.failures(second.results))
    local reached = kernel.distinct(first.results, "backend")
    assert.equals(1, #reached, "50 connects reached " .. table.concat(reached, ", "))
    assert.same(reached, kernel.distinct(second.results, "backend"))
  end)

  it("chooses a backend afresh once the timeout has passed", function()
    local env = kernel.open(pending)
    local backends = env:tcp_servers({ "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4" })
    -- Ten frontends expire together: that all ten pick their old backend again
    -- by chance has a probability of 4^-10, so one wait of the timeout suffices.
    local frontends = {}
    for i = 1, 10 do
      frontends[i] = "127.10.1." .. i
      env:frontend{ address = frontends[i], port = PORT, id = 200 + i, backends = backends,
        affinity_seconds = TIMEOUT_SECONDS }
    end
    local hosts = table.concat(frontends, ",")

    -- Two connects to each frontend, one after the other.
    local before = connects_with_events(env, hosts, 2)
    for i = 1, #frontends do
      local first, again = before[2 * i - 1], before[2 * i]
      assert.equals(first.backend, again.backend, "within the timeout " .. frontends[i] .. " keeps its backend")
      assert.is_false(affinity_hit(first.event), "the first connect to " .. frontends[i] .. " is a fresh choice")
      assert.is_true(affinity_hit(again.event), "the second connect to " .. frontends[i] .. " says affinity hit")
    end

    kernel.sleep(TIMEOUT_SECONDS + 0.3)

    local after = connects_with_events(env, hosts, 1)
    local changed = 0
    for i = 1, #frontends do
      assert.is_false(affinity_hit(after[i].event), "after the timeout " .. frontends[i] .. " is a fresh choice")
      if after[i].backend ~= before[2 * i].backend then
        changed = changed + 1
      end
    end
    assert.is_true(changed >= 1, "after the timeout all ten frontends kept their backend")
  end)

  it("never uses a removed backend, even while its affinity record lives", function()
    local env = kernel.open(pending)
    local backends = env:tcp_servers({ "127.0.0.1", "127.0.0.2", "127.0.0.3" })
    local key = env:frontend{ address = VIP, port = PORT, id = 104, backends = backends, affinity_seconds = 60 }
    local removed = one_connect(env, VIP)

    env:remove_backend(key, removed) -- its server keeps answering, so a use would show

    local _, event = one_connect(env, VIP)
    assert.is_false(affinity_hit(event), "the record of the removed backend is not used")
    local run = env:client_inside("tcp", VIP, PORT, 20)
    assert.same({}, kernel.failures(run.results))
    local reached = kernel.distinct(run.results, "backend")
    for _, backend in ipairs(reached) do
      assert.are_not.equal(removed, backend, "reached the removed backend")
    end
    assert.equals(1, #reached, "the new choice is kept: " .. table.concat(reached, ", "))
  end)

  it("does not use a record whose slot now holds another backend", function()
    local env = kernel.open(pending)
    local servers = env:tcp_servers({ "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4" })
    local backends = { servers[1], servers[2], servers[3] }
    local key = env:frontend{ address = VIP, port = PORT, id = 104, backends = backends, affinity_seconds = 60 }
    local replaced = one_connect(env, VIP)

    -- The newcomer takes the very slot the record names.
    local next_backends = {}
    for slot, backend in ipairs(backends) do
      next_backends[slot] = backend == replaced and servers[4] or backend
    end
    env:set_backends(key, next_backends)

    local reached, event = one_connect(env, VIP)
    assert.is_false(affinity_hit(event), "the record naming " .. replaced .. " is not used")
    assert.are_not.equal(replaced, reached)
  end)
end)
