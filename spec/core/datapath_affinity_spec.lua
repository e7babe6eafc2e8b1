-- Session affinity: per client network namespace (its netns cookie) and
-- frontend, with the Service's timeout; a record whose backend is gone is not
-- used (ARCHITECTURE.md, "Datapath rules"). Most clients here run in the
-- spec's own network namespace, so they all are one affinity client; the
-- last spec runs clients in two network namespaces it creates, as two pods.
local abi = require("balancing.abi")
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

-- The records of map_affinity by client netns cookie (decimal text), then by
-- frontend address: { [cookie] = { ["127.10.1.1"] = "127.0.0.2:41234" } }.
local function affinity_records(env)
  local records = {}
  for _, entry in ipairs(env:map("map_affinity"):dump()) do
    local key = ffi.cast("const struct affinity_key *", entry.key)
    local value = ffi.cast("const struct affinity_value *", entry.value)
    local cookie = kernel.u64_text(key.netns_cookie)
    records[cookie] = records[cookie] or {}
    local frontend = abi.u32_to_ipv4(key.frontend.address)
    records[cookie][frontend] = abi.u32_to_ipv4(value.address) .. ":" .. abi.ntohs(value.port)
  end
  return records
end

-- One client of netns `netns`: `count` connects to each frontend in turn.
-- Returns its backend per frontend (asserting it kept one) and its netns
-- cookie, as its events carry it.
local function netns_client(env, netns, frontends, count)
  local run = env:client_in_netns(netns, "tcp", table.concat(frontends, ","), PORT, count)
  assert.same({}, kernel.failures(run.results))
  local events = env:events(#run.results, 2)
  assert.equals(#run.results, #events, "one event per connect")
  local cookies = kernel.distinct(events, "netns_cookie")
  assert.equals(1, #cookies, "one netns cookie for all connects of " .. netns)
  local backend_of = {}
  for i, result in ipairs(run.results) do
    local frontend = frontends[math.floor((i - 1) / count) + 1]
    backend_of[frontend] = backend_of[frontend] or result.backend
    assert.equals(backend_of[frontend], result.backend, netns .. " keeps its backend for " .. frontend)
  end
  return backend_of, kernel.u64_text(cookies[1])
end

describe("datapath: session affinity per client network namespace", function()
  after_each(kernel.close_all)

  it("keeps one affinity record per client network namespace, each namespace on its own backend", function()
    local env = kernel.open(pending)
    local a, b = env:netns("a"), env:netns("b")
    -- the same four backends answer inside both namespaces
    local backends = env:tcp_servers_in_netns(a, { "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4" })
    env:tcp_servers_in_netns(b, backends)
    -- Ten frontends: that both namespaces land on the same backend of all ten
    -- by chance has a probability of 4^-10, so independent records show.
    local frontends = {}
    for i = 1, 10 do
      frontends[i] = "127.10.1." .. i
      env:frontend{ address = frontends[i], port = PORT, id = 300 + i, backends = backends, affinity_seconds = 60 }
    end

    local first_a, cookie_a = netns_client(env, a, frontends, 3)
    local first_b, cookie_b = netns_client(env, b, frontends, 3)
    local again_a = netns_client(env, a, frontends, 3)
    local again_b = netns_client(env, b, frontends, 3)

    assert.are_not.equal(cookie_a, cookie_b, "two namespaces, two cookies")
    local own = kernel.u64_text(kernel.core().netns_cookie())
    assert.are_not.equal(own, cookie_a)
    assert.are_not.equal(own, cookie_b)
    assert.same(first_a, again_a, "namespace a keeps its backends while b connects")
    assert.same(first_b, again_b, "namespace b keeps its backends")
    local differ = 0
    for _, frontend in ipairs(frontends) do
      if first_a[frontend] ~= first_b[frontend] then
        differ = differ + 1
      end
    end
    assert.is_true(differ >= 1, "both namespaces on the same backend of all ten frontends: one shared record?")

    local records = affinity_records(env)
    assert.same({ [cookie_a] = first_a, [cookie_b] = first_b }, records,
      "map_affinity holds one record per (netns cookie, frontend), naming that namespace's backend")
  end)
end)
