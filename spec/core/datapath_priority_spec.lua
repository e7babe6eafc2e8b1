-- Lookup priority for one address:port:protocol: LocalRedirect, then
-- Balancing, then Service; a LocalRedirect entry is passed over when its
-- per-second QoS limit is reached or when the client is one of its own
-- backends (loop avoidance) (ARCHITECTURE.md, "Datapath rules").
local bit = require("bit")
local ffi = require("ffi")
local kernel = require("helpers.kernel")
local lfs = require("lfs")

local VIP, PORT = "127.10.0.1", 80
local SERVICE_ID, BALANCING_ID, REDIRECT_ID = 110, 111, 112

local function second_of(event)
  return math.floor(tonumber(event.timestamp_ns) / 1e9)
end

local function has_flag(event, flag)
  return bit.band(event.flags, flag) ~= 0
end

-- One backend per kind of entry on the same frontend, so the backend reached
-- says which entry served.
local function frontend_of_every_kind(env, kinds)
  local servers = env:tcp_servers({ "127.0.0.1", "127.0.0.2", "127.0.0.3" })
  local backend = { service = servers[1], balancing = servers[2], localRedirect = servers[3] }
  local entries = {
    service = { id = SERVICE_ID, mode = "ClusterIP" },
    balancing = { id = BALANCING_ID, mode = "address" },
    localRedirect = { id = REDIRECT_ID, mode = "address" },
  }
  local keys = {}
  for _, kind in ipairs(kinds) do
    keys[kind] = env:frontend{ address = VIP, port = PORT, type = kind, mode = entries[kind].mode,
      id = entries[kind].id, backends = { backend[kind] } }
  end
  return backend, keys
end

describe("datapath: lookup priority", function()
  after_each(kernel.close_all)

  it("sends a frontend that is both a LocalRedirect and a Service to the LocalRedirect backends", function()
    local env = kernel.open(pending)
    local backend = frontend_of_every_kind(env, { "service", "localRedirect" })

    local run = env:client_inside("tcp", VIP, PORT, 10)

    assert.same({}, kernel.failures(run.results))
    assert.same({ backend.localRedirect }, kernel.distinct(run.results, "backend"))
    local events = env:events(10, 1)
    assert.equals(10, #events)
    assert.same({ ffi.C.NAT_TYPE_LOCAL_REDIRECT }, kernel.distinct(events, "nat_type"))
    assert.same({ REDIRECT_ID }, kernel.distinct(events, "service_id"))
  end)

  it("orders LocalRedirect before Balancing before Service", function()
    local env = kernel.open(pending)
    local backend, keys = frontend_of_every_kind(env, { "service", "balancing", "localRedirect" })

    local with_all = env:client_inside("tcp", VIP, PORT, 3)
    env:delete_frontend(keys.localRedirect)
    local without_redirect = env:client_inside("tcp", VIP, PORT, 3)
    env:delete_frontend(keys.balancing)
    local service_only = env:client_inside("tcp", VIP, PORT, 3)

    assert.same({ backend.localRedirect }, kernel.distinct(with_all.results, "backend"))
    assert.same({ backend.balancing }, kernel.distinct(without_redirect.results, "backend"))
    assert.same({ backend.service }, kernel.distinct(service_only.results, "backend"))
  end)

  it("lets the connect over the LocalRedirect QoS limit fall through to the Service, saying so in its event", function()
    local env = kernel.open(pending)
    local backend = frontend_of_every_kind(env, { "service", "localRedirect" })
    env:configure{ redirect_qos_limit = 5 }

    -- Six connects in one burst, started just after a second boundary of the
    -- datapath's clock, so they share one per-second counter.
    local run = env:client_inside("tcp", VIP, PORT, 6, "--align-second")

    assert.same({}, kernel.failures(run.results))
    local events = env:events(6, 1)
    assert.equals(6, #events)
    assert.equals(second_of(events[1]), second_of(events[6]), "the burst stayed within one second")
    for i = 1, 5 do
      assert.equals(backend.localRedirect, run.results[i].backend, "connect " .. i .. " is redirected")
      assert.equals(ffi.C.NAT_TYPE_LOCAL_REDIRECT, events[i].nat_type)
      assert.is_false(events[i].redirect_hit_limit)
    end
    assert.equals(backend.service, run.results[6].backend, "the 6th connect resolves as the Service")
    assert.equals(ffi.C.NAT_TYPE_SERVICE, events[6].nat_type)
    assert.equals(SERVICE_ID, events[6].service_id)
    assert.is_true(events[6].redirect_hit_limit)
  end)

  it("keeps limiting when more frontends redirected than map_redirect_qos holds (it evicts, never fills)", function()
    -- four counters for six frontends: a map that filled up would leave the
    -- last two without a counter, and so without a limit
    local env = kernel.open(pending, { max_redirect_qos = 4 })
    local servers = env:tcp_servers({ "127.0.0.1", "127.0.0.3" })
    env:configure{ redirect_qos_limit = 1 }
    for i = 1, 6 do
      local address = "127.10.1." .. i
      env:frontend{ address = address, port = PORT, type = "service", id = SERVICE_ID, backends = { servers[1] } }
      env:frontend{ address = address, port = PORT, type = "localRedirect", mode = "address", id = REDIRECT_ID,
        backends = { servers[2] } }
    end

    for i = 1, 6 do
      local run = env:client_inside("tcp", "127.10.1." .. i, PORT, 2, "--align-second")
      assert.same({}, kernel.failures(run.results))
      assert.equals(servers[2], run.results[1].backend, "frontend " .. i .. ": the first connect is redirected")
      assert.equals(servers[1], run.results[2].backend, "frontend " .. i .. ": the second is over the limit")
    end
  end)

  it("skips the LocalRedirect for a client whose cgroup is in map_redirect_loop, resolving as the Service", function()
    local env = kernel.open(pending)
    local backend, keys = frontend_of_every_kind(env, { "service", "localRedirect" })
    env:redirect_loop(env:cgroup_id(), keys.localRedirect, REDIRECT_ID)

    local run = env:client_inside("tcp", VIP, PORT, 5)

    assert.same({}, kernel.failures(run.results))
    assert.same({ backend.service }, kernel.distinct(run.results, "backend"))
    local events = env:events(5, 1)
    assert.equals(5, #events)
    for _, event in ipairs(events) do
      assert.equals(ffi.C.NAT_TYPE_SERVICE, event.nat_type)
      assert.is_true(has_flag(event, ffi.C.EVENT_FLAG_LOOP_SKIPPED), "the event says the redirect was skipped")
    end
  end)

  it("skips it for a client in a cgroup below a listed one (a container of the listed pod)", function()
    local env = kernel.open(pending)
    local backend, keys = frontend_of_every_kind(env, { "service", "localRedirect" })
    local pod = env:child_cgroup("pod")
    local container = env:child_cgroup("pod/container")
    env:redirect_loop(lfs.attributes(pod, "ino"), keys.localRedirect, REDIRECT_ID)

    local run = kernel.client_in_cgroup(container, "tcp", VIP, PORT, 3)

    assert.same({ backend.service }, kernel.distinct(run.results, "backend"))
  end)

  it("keeps redirecting a client whose cgroup is not in map_redirect_loop: a sibling, or the parent", function()
    local env = kernel.open(pending)
    local backend, keys = frontend_of_every_kind(env, { "service", "localRedirect" })
    local pod = env:child_cgroup("pod")
    local sibling = env:child_cgroup("other-pod")
    env:redirect_loop(lfs.attributes(pod, "ino"), keys.localRedirect, REDIRECT_ID)

    local from_sibling = kernel.client_in_cgroup(sibling, "tcp", VIP, PORT, 3)
    local from_parent = env:client_inside("tcp", VIP, PORT, 3)

    assert.same({ backend.localRedirect }, kernel.distinct(from_sibling.results, "backend"))
    assert.same({ backend.localRedirect }, kernel.distinct(from_parent.results, "backend"))
  end)

  it("keeps skipping for every pair map_redirect_loop holds when it is full, and refuses one more pair "
    .. "with an error (a plain hash: an LRU would drop an exemption without a word)", function()
    local env = kernel.open(pending, { max_redirect_loop = 2 })
    local backend, keys = frontend_of_every_kind(env, { "service", "localRedirect" })
    local own = ffi.new("uint64_t", env:cgroup_id())
    env:redirect_loop(own, keys.localRedirect, REDIRECT_ID)
    env:redirect_loop(own + 1000, keys.localRedirect, REDIRECT_ID) -- the map is full now

    local refused = pcall(env.redirect_loop, env, own + 2000, keys.localRedirect, REDIRECT_ID)
    local run = env:client_inside("tcp", VIP, PORT, 5)

    assert.is_false(refused, "a third pair in a map of two is refused, not written over another")
    assert.equals(2, #env:map("map_redirect_loop"):dump())
    assert.same({}, kernel.failures(run.results))
    assert.same({ backend.service }, kernel.distinct(run.results, "backend"), "the client's pair still skips")
  end)
end)
