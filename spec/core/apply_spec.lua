-- The apply step (ARCHITECTURE.md "Data flow" step 4, "Write order", and the
-- stable slots of "Datapath rules"; docs/core-api.md "Applying entries"): an
-- owner's entries, exactly as the reconcile driver gives them, are diffed
-- against what was written for that owner and only the difference reaches the
-- kernel, in an order that never leaves a frontend resolving to nothing.
local abi = require("balancing.abi")
local bit = require("bit")
local core_env = require("helpers.core_env")
local ffi = require("ffi")
local kernel = require("helpers.kernel")

local VIP, PORT = "127.10.0.1", 80

-- Entries --------------------------------------------------------------------------

-- One frontend as reconcile gives it: backends are "address:port", the first
-- local_count of them local.
local function frontend(address, port, backends, opts)
  opts = opts or {}
  local local_count = opts.local_count or 0
  local value = ffi.new("struct service_value")
  value.service_id = opts.id or 101
  value.total_count = #backends
  value.local_count = local_count
  value.affinity_seconds = opts.affinity_seconds or 0
  value.nat_mode = ffi.C.NAT_MODE_CLUSTER_IP
  local list = {}
  for i, endpoint in ipairs(backends) do
    local backend_address, backend_port = kernel.split_endpoint(endpoint)
    list[i] = abi.backend_value(backend_address, backend_port, i <= local_count)
  end
  return { key = abi.service_key(address, port, opts.protocol or "TCP", "service"), value = value, backends = list }
end

local function entries(owner, frontends, extra)
  local result = { owner = owner, frontends = frontends or {} }
  for field, value in pairs(extra or {}) do
    result[field] = value
  end
  return result
end

-- "127.0.0.N:PORT" for N in from..to
local function endpoints(from, to, port)
  local list = {}
  for n = from, to do
    list[#list + 1] = string.format("127.0.0.%d:%d", n, port or 8080)
  end
  return list
end

-- The last count connects' events all say their affinity record was used.
local function assert_affinity_hits(env, count)
  local events = env:events(count, 2)
  assert.equals(count, #events)
  for _, event in ipairs(events) do
    assert.is_true(bit.band(event.flags, ffi.C.EVENT_FLAG_AFFINITY_HIT) ~= 0, "the affinity record was used")
  end
end

-- Reading the kernel back ------------------------------------------------------------

local decode = core_env.decode

local function backend_text(raw)
  local value = decode("struct backend_value", raw)
  return abi.u32_to_ipv4(value.address) .. ":" .. abi.ntohs(value.port)
end

-- The frontend's map_service value, or nil.
local function service(map, address, port)
  local raw = map:lookup(abi.service_key(address, port, "TCP", "service"))
  return raw and decode("struct service_value", raw) or nil
end

-- Every slot of the frontend in map_backend, in slot order, as "address:port";
-- checks there is no hole and nothing beyond.
local function slots(map, address, port)
  local key = abi.service_key(address, port, "TCP", "service")
  local list = {}
  for slot = 0, 1000 do
    local raw = map:lookup(kernel.backend_key(key, slot))
    if not raw then
      break
    end
    list[#list + 1] = backend_text(raw)
  end
  local found = 0
  for _, entry in ipairs(map:dump()) do
    if decode("struct backend_key", entry.key).frontend.address == key.address
      and decode("struct backend_key", entry.key).frontend.port == key.port then
      found = found + 1
    end
  end
  assert.equals(#list, found, "the slots of " .. address .. ":" .. port .. " are dense")
  return list
end

local function without(list, removed)
  local result = {}
  for _, item in ipairs(list) do
    if item ~= removed then
      result[#result + 1] = item
    end
  end
  return result
end

local function with(list, ...)
  local result = { ... }
  for _, item in ipairs(list) do
    result[#result + 1] = item
  end
  table.sort(result) -- reconcile's order, not the slots'
  return result
end

-- A loaded (not attached) datapath and its applier.
local function loaded(env, sizes)
  local dp = env:load(sizes)
  local applier = assert(env.core.applier(dp))
  env:on_close(function()
    applier:close()
  end)
  return applier, dp:map("map_service"), dp:map("map_backend"), dp
end

describe("apply", function()
  after_each(function()
    core_env.close_all()
    kernel.close_all()
  end)

  it("writes only the difference: one endpoint more on a 10-backend frontend is 1 slot and 1 frontend", function()
    local env = core_env.open(pending)
    local applier, services, backends = loaded(env)
    local ten = endpoints(1, 10)

    local owner = "service/default/web"
    local stats = assert(applier:apply(owner, entries(owner, { frontend(VIP, PORT, ten) })))
    assert.equals(10, stats.map_backend.written)
    assert.equals(1, stats.map_service.written)

    stats = assert(applier:apply("service/default/web", entries("service/default/web", { frontend(VIP, PORT, ten) })))
    assert.equals(0, stats.written, "the same entries again write nothing")
    assert.equals(0, stats.deleted)

    stats = assert(applier:apply("service/default/web",
      entries("service/default/web", { frontend(VIP, PORT, with(ten, "127.0.0.11:8080")) })))
    assert.same({ written = 1, deleted = 0 }, stats.map_backend)
    assert.same({ written = 1, deleted = 0 }, stats.map_service)
    assert.equals(11, service(services, VIP, PORT).total_count)
    assert.equals(11, #slots(backends, VIP, PORT))

    stats = assert(applier:apply("service/default/web",
      entries("service/default/web", { frontend(VIP, PORT, without(with(ten, "127.0.0.11:8080"), "127.0.0.4:8080")) })))
    assert.same({ written = 1, deleted = 1 }, stats.map_backend, "one removed: the last slot moves, then goes")
    assert.same({ written = 1, deleted = 0 }, stats.map_service)
  end)

  it("keeps each backend in its slot: a removed backend's slot is taken by the last of its group", function()
    local env = core_env.open(pending)
    local applier, _, backends = loaded(env)
    local owner = "service/default/web"
    -- reconcile's order: local first, each group sorted
    local first = { "127.0.0.2:8080", "127.0.0.3:8080", "127.0.0.4:8080", "127.0.0.5:8080", "127.0.0.6:8080" }
    assert(applier:apply(owner, entries(owner, { frontend(VIP, PORT, first) })))
    assert.same(first, slots(backends, VIP, PORT))

    -- a newcomer that sorts first still goes to the end: nobody else moves
    local stats = assert(applier:apply(owner, entries(owner, { frontend(VIP, PORT, with(first, "127.0.0.1:8080")) })))
    assert.equals(1, stats.map_backend.written)
    local after_add = slots(backends, VIP, PORT)
    assert.same({ "127.0.0.2:8080", "127.0.0.3:8080", "127.0.0.4:8080", "127.0.0.5:8080", "127.0.0.6:8080",
      "127.0.0.1:8080" }, after_add)

    -- 127.0.0.3 leaves: the last slot (127.0.0.1) takes its slot 1
    stats = assert(applier:apply(owner, entries(owner,
      { frontend(VIP, PORT, with(without(first, "127.0.0.3:8080"), "127.0.0.1:8080")) })))
    assert.same({ written = 1, deleted = 1 }, stats.map_backend)
    assert.same({ "127.0.0.2:8080", "127.0.0.1:8080", "127.0.0.4:8080", "127.0.0.5:8080", "127.0.0.6:8080" },
      slots(backends, VIP, PORT))
  end)

  it("keeps local backends in the first local_count slots as the groups grow and shrink", function()
    local env = core_env.open(pending)
    local applier, services, backends = loaded(env)
    local owner = "service/default/web"
    local locals = { "127.0.0.1:8080", "127.0.0.2:8080" }
    local remotes = { "127.0.0.5:8080", "127.0.0.6:8080", "127.0.0.7:8080" }
    local function program(local_list, remote_list)
      local list = {}
      for _, b in ipairs(local_list) do list[#list + 1] = b end
      for _, b in ipairs(remote_list) do list[#list + 1] = b end
      return assert(applier:apply(owner, entries(owner,
        { frontend(VIP, PORT, list, { local_count = #local_list }) })))
    end
    program(locals, remotes)

    -- a third local backend: it takes slot 2, whose remote backend moves to the end
    local stats = program({ "127.0.0.1:8080", "127.0.0.2:8080", "127.0.0.3:8080" }, remotes)
    assert.equals(2, stats.map_backend.written)
    assert.same({ "127.0.0.1:8080", "127.0.0.2:8080", "127.0.0.3:8080", "127.0.0.6:8080", "127.0.0.7:8080",
      "127.0.0.5:8080" }, slots(backends, VIP, PORT))
    assert.equals(3, service(services, VIP, PORT).local_count)

    -- the first local leaves: the last local fills its slot, the last slot fills the local group's end
    stats = program({ "127.0.0.2:8080", "127.0.0.3:8080" }, remotes)
    assert.same({ "127.0.0.3:8080", "127.0.0.2:8080", "127.0.0.5:8080", "127.0.0.6:8080", "127.0.0.7:8080" },
      slots(backends, VIP, PORT))
    assert.equals(2, service(services, VIP, PORT).local_count)
    local value = decode("struct backend_value", backends:lookup(kernel.backend_key(
      abi.service_key(VIP, PORT, "TCP", "service"), 1)))
    assert.equals(ffi.C.BACKEND_FLAG_LOCAL, value.flags)
    assert.same({ written = 2, deleted = 1 }, stats.map_backend)
  end)

  it("never lets a frontend resolve to nothing: a client loop has 0 failures while each backend is replaced", function()
    local env = kernel.open(pending)
    local servers = env:tcp_servers({ "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4",
      "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8" })
    local applier = assert(kernel.core().applier(env.dp))
    local owner = "service/default/web"
    local current = { servers[1], servers[2], servers[3], servers[4] }
    assert(applier:apply(owner, entries(owner, { frontend(VIP, PORT, current) })))

    local client = env:client_inside_started("tcp", VIP, PORT, 3000)
    local seen = #env:events(20, 10)
    assert.is_true(seen >= 20, "the client loop is running")
    for i = 1, 4 do
      -- one joins, then one leaves: the count changes both ways under the client
      current[#current + 1] = servers[4 + i]
      table.sort(current)
      env:drain_events(0) -- the connects counted next come after this change
      assert(applier:apply(owner, entries(owner, { frontend(VIP, PORT, current) })))
      assert.is_true(#env:events(10, 10) >= 10, "connects went on after a backend joined")
      current = without(current, servers[i])
      env:drain_events(0)
      assert(applier:apply(owner, entries(owner, { frontend(VIP, PORT, current) })))
      assert.is_true(#env:events(10, 10) >= 10, "connects went on after a backend left")
    end
    local run = client.wait()
    applier:close()

    assert.same({}, kernel.failures(run.results))
    local new = { [servers[5]] = true, [servers[6]] = true, [servers[7]] = true, [servers[8]] = true }
    for i = #run.results - 9, #run.results do
      assert.is_true(new[run.results[i].backend], "the last connects reach the new backends only")
    end
  end)

  it("keeps an affinity client on its backend while another endpoint is added", function()
    local env = kernel.open(pending)
    local servers = env:tcp_servers({ "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.1" })
    local applier = assert(kernel.core().applier(env.dp))
    local owner = "service/default/web"
    local first = { servers[1], servers[2], servers[3] }
    assert(applier:apply(owner, entries(owner, { frontend(VIP, PORT, first, { affinity_seconds = 60 }) })))
    local before = env:client_inside("tcp", VIP, PORT, 1).results[1]
    assert.is_nil(before.errno)
    env:drain_events()

    -- 127.0.0.1 sorts first: re-sorting the slots would move every backend
    local stats = assert(applier:apply(owner, entries(owner,
      { frontend(VIP, PORT, with(first, servers[4]), { affinity_seconds = 60 }) })))
    assert.equals(1, stats.map_backend.written)

    local run = env:client_inside("tcp", VIP, PORT, 20)
    applier:close()
    assert.same({}, kernel.failures(run.results))
    assert.same({ before.backend }, kernel.distinct(run.results, "backend"))
    assert_affinity_hits(env, 20)
  end)

  it("reports a full map with the owner it refused, keeps what was written, and finishes on the next apply", function()
    local env = core_env.open(pending)
    local applier, services, backends = loaded(env, { max_backends = 4 })
    assert(applier:apply("service/default/other", entries("service/default/other",
      { frontend("127.10.0.2", PORT, endpoints(1, 2)) })))

    local owner = "service/default/web"
    local want = entries(owner, { frontend(VIP, PORT, endpoints(3, 6)) })
    local ok, err, code, stats = applier:apply(owner, want)
    assert.is_nil(ok)
    assert.matches("owner service/default/web: update map_backend key 127.10.0.1:80/TCP service slot 2: map is full",
      err, 1, true)
    assert.equals(-7, code) -- E2BIG
    assert.equals(2, stats.map_backend.written)
    assert.equals(0, stats.map_service.written, "no frontend whose slots are missing")
    assert.is_nil(service(services, VIP, PORT))

    local shadow = assert(applier:shadow(owner))
    assert.equals(1, #shadow.frontends)
    assert.is_nil(shadow.frontends[1].value)
    assert.same({ "127.0.0.3:8080", "127.0.0.4:8080" },
      { backend_text(shadow.frontends[1].backends[1]), backend_text(shadow.frontends[1].backends[2]) })
    assert.equals(2, #shadow.frontends[1].backends)

    assert(applier:forget("service/default/other")) -- room again
    stats = assert(applier:apply(owner, want))
    assert.same({ written = 2, deleted = 0 }, stats.map_backend, "only the slots that failed")
    assert.same({ written = 1, deleted = 0 }, stats.map_service)
    assert.same(endpoints(3, 6), slots(backends, VIP, PORT))
  end)

  it("still deletes what is gone when a write fails, so the next apply has room", function()
    local env = core_env.open(pending)
    local applier, services, backends = loaded(env, { max_backends = 4 })
    local owner = "service/default/web"
    assert(applier:apply(owner, entries(owner, { frontend("127.10.0.1", PORT, endpoints(1, 4)) })))

    -- the Service moves to another address: the new slots find the map full
    local moved = entries(owner, { frontend("127.10.0.2", PORT, endpoints(1, 4)) })
    local ok, err, code, stats = applier:apply(owner, moved)
    assert.is_nil(ok)
    assert.matches("owner service/default/web: update map_backend key 127.10.0.2:80/TCP service slot 0: map is full",
      err, 1, true)
    assert.equals(-7, code)
    assert.same({ written = 0, deleted = 1 }, stats.map_service, "the old frontend went")
    assert.same({ written = 0, deleted = 4 }, stats.map_backend, "and its slots")
    assert.is_nil(service(services, "127.10.0.1", PORT))

    stats = assert(applier:apply(owner, moved))
    assert.same({ written = 4, deleted = 0 }, stats.map_backend)
    assert.same(endpoints(1, 4), slots(backends, "127.10.0.2", PORT))
  end)

  it("refuses a second owner of one frontend, naming the first, and writes nothing of it", function()
    local env = core_env.open(pending)
    local applier, services = loaded(env)
    assert(applier:apply("service/default/web", entries("service/default/web",
      { frontend(VIP, PORT, endpoints(1, 2), { id = 1 }) })))

    local other = entries("balancing/p", { frontend("127.10.0.9", PORT, endpoints(3, 3), { id = 2 }),
      frontend(VIP, PORT, endpoints(3, 4), { id = 2 }) })
    local ok, err, code = applier:apply("balancing/p", other)
    assert.is_nil(ok)
    assert.equals("owner balancing/p: map_service key 127.10.0.1:80/TCP service: already written by owner "
      .. "service/default/web", err)
    assert.equals(-16, code) -- EBUSY
    assert.equals(1, service(services, VIP, PORT).service_id)
    assert.is_nil(service(services, "127.10.0.9", PORT), "nothing of the refused owner")
    assert.is_nil(applier:shadow("balancing/p"))

    assert(applier:apply("service/default/web", entries("service/default/web")))
    assert(applier:apply("balancing/p", other))
    assert.equals(2, service(services, VIP, PORT).service_id)
  end)

  it("forget(owner) removes exactly that owner's entries", function()
    local env = core_env.open(pending)
    local applier, services, backends, dp = loaded(env)
    local node_ip = ffi.new("struct node_ip_key")
    node_ip.address = abi.ipv4_to_u32("192.168.0.10")
    local node_id = ffi.new("struct node_ip_value", { node_id = 3 })
    local proxy_key = ffi.new("struct node_proxy_ip_key", { node_id = 3 })
    local proxy_value = ffi.new("struct node_proxy_ip_value")
    proxy_value.address = abi.ipv4_to_u32("192.168.0.10")
    assert(applier:apply("node", entries("node", {}, {
      node_ips = { { key = node_ip, value = node_id } },
      node_proxy_ips = { { key = proxy_key, value = proxy_value } } })))
    assert(applier:apply("service/a/one", entries("service/a/one",
      { frontend("127.10.0.1", PORT, endpoints(1, 3)), frontend("127.10.0.2", PORT, endpoints(1, 2)) })))
    assert(applier:apply("service/b/two", entries("service/b/two", { frontend("127.10.0.3", PORT, endpoints(4, 5)) })))

    local stats = assert(applier:forget("service/a/one"))
    assert.same({ written = 0, deleted = 2 }, stats.map_service)
    assert.same({ written = 0, deleted = 5 }, stats.map_backend)
    assert.is_nil(applier:shadow("service/a/one"))
    assert.equals(1, #services:dump())
    assert.same(endpoints(4, 5), slots(backends, "127.10.0.3", PORT))
    assert.equals(1, #dp:map("map_node_ip"):dump())
    assert.equals(1, #dp:map("map_node_proxy_ip"):dump())

    stats = assert(applier:forget("node"))
    assert.equals(1, stats.map_node_ip.deleted)
    assert.equals(1, stats.map_node_proxy_ip.deleted)
    assert.equals(0, #dp:map("map_node_ip"):dump())
    assert.same({ written = 0, deleted = 0 }, stats.map_service)
  end)

  it("writes a LocalRedirect owner's loop-avoidance pairs with its frontend, deletes the pairs that leave", function()
    local env = core_env.open(pending)
    local applier, _, _, dp = loaded(env)
    local owner = "localRedirect/node-local-dns"
    local redirect = frontend(VIP, PORT, endpoints(2, 2), { id = 20 })
    local function loop_pairs(cgroup_ids)
      local list = {}
      for i, id in ipairs(cgroup_ids) do
        local key = ffi.new("struct redirect_loop_key", { cgroup_id = id })
        key.frontend = redirect.key
        list[i] = { key = key, value = ffi.new("struct redirect_loop_value", { service_id = 20 }) }
      end
      return list
    end
    local function listed()
      local ids = {}
      for _, entry in ipairs(dp:map("map_redirect_loop"):dump()) do
        ids[#ids + 1] = tonumber(core_env.decode("struct redirect_loop_key", entry.key).cgroup_id)
      end
      table.sort(ids)
      return ids
    end

    local stats = assert(applier:apply(owner,
      entries(owner, { redirect }, { redirect_loops = loop_pairs({ 7, 9 }) })))
    assert.same({ written = 2, deleted = 0 }, stats.map_redirect_loop)
    assert.same({ 7, 9 }, listed())

    stats = assert(applier:apply(owner, entries(owner, { redirect }, { redirect_loops = loop_pairs({ 9 }) })))
    assert.same({ written = 0, deleted = 1 }, stats.map_redirect_loop)
    assert.same({ 9 }, listed())

    assert(applier:apply(owner, entries(owner, {}, { redirect_loops = {} })))
    assert.same({}, listed())
    assert.is_nil(applier:shadow(owner))
  end)

  it("writes a node table entry only when its value changes", function()
    local env = core_env.open(pending)
    local applier, _, _, dp = loaded(env)
    local function node_ips(list)
      local result = {}
      for address, id in pairs(list) do
        local key = ffi.new("struct node_ip_key")
        key.address = abi.ipv4_to_u32(address)
        result[#result + 1] = { key = key, value = ffi.new("struct node_ip_value", { node_id = id }) }
      end
      return entries("node", {}, { node_ips = result })
    end
    local stats = assert(applier:apply("node", node_ips{ ["10.0.0.1"] = 1, ["10.0.0.2"] = 2 }))
    assert.same({ written = 2, deleted = 0 }, stats.map_node_ip)
    stats = assert(applier:apply("node", node_ips{ ["10.0.0.1"] = 1, ["10.0.0.2"] = 5, ["10.0.0.3"] = 3 }))
    assert.same({ written = 2, deleted = 0 }, stats.map_node_ip)
    stats = assert(applier:apply("node", node_ips{ ["10.0.0.3"] = 3 }))
    assert.same({ written = 0, deleted = 2 }, stats.map_node_ip)
    assert.equals(1, #dp:map("map_node_ip"):dump())
  end)

  it("after a restart takes its entries over from the maps: the same entries write nothing, the slots stay", function()
    local env = core_env.open(pending)
    local before, _, backends, dp = loaded(env)
    local owner = "service/default/web"
    local first = { "127.0.0.2:8080", "127.0.0.3:8080", "127.0.0.4:8080" }
    assert(before:apply(owner, entries(owner, { frontend(VIP, PORT, first, { affinity_seconds = 60 }) })))
    local now = with(first, "127.0.0.1:8080") -- its slot is the last, its place in reconcile's order the first
    assert(before:apply(owner, entries(owner, { frontend(VIP, PORT, now, { affinity_seconds = 60 }) })))
    local node_ip = ffi.new("struct node_ip_key")
    node_ip.address = abi.ipv4_to_u32("192.168.0.10")
    assert(before:apply("node", entries("node", {}, {
      node_ips = { { key = node_ip, value = ffi.new("struct node_ip_value", { node_id = 3 }) } } })))
    local slots_before = slots(backends, VIP, PORT)
    before:close() -- the agent stops; the maps stay

    local after = assert(env.core.applier(dp))
    env:on_close(function()
      after:close()
    end)
    assert.same({ map_service = 1, map_backend = 4, map_node_ip = 1, map_node_proxy_ip = 0, map_redirect_loop = 0 },
      assert(after:read_back()))
    local stats = assert(after:apply(owner, entries(owner, { frontend(VIP, PORT, now, { affinity_seconds = 60 }) })))
    assert.equals(0, stats.written, "nothing rewritten that the kernel already has")
    assert.equals(0, stats.deleted)
    assert.same(slots_before, slots(backends, VIP, PORT))

    stats = assert(after:apply(owner, entries(owner,
      { frontend(VIP, PORT, with(now, "127.0.0.9:8080"), { affinity_seconds = 60 }) })))
    assert.same({ written = 1, deleted = 0 }, stats.map_backend)
    assert.same({ written = 1, deleted = 0 }, stats.map_service)
  end)

  it("keeps an affinity client on its backend across a restart of the applier and an added endpoint", function()
    local env = kernel.open(pending)
    local servers = env:tcp_servers({ "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.1" })
    local owner = "service/default/web"
    local first = { servers[1], servers[2], servers[3] }
    local before = assert(kernel.core().applier(env.dp))
    assert(before:apply(owner, entries(owner, { frontend(VIP, PORT, first, { affinity_seconds = 60 }) })))
    before:close()
    local chosen = env:client_inside("tcp", VIP, PORT, 1).results[1]
    assert.is_nil(chosen.errno)
    env:drain_events()

    local after = assert(kernel.core().applier(env.dp))
    assert(after:read_back())
    local stats = assert(after:apply(owner, entries(owner,
      { frontend(VIP, PORT, with(first, servers[4]), { affinity_seconds = 60 }) })))
    assert(after:sweep())
    after:close()
    assert.equals(1, stats.map_backend.written)

    local run = env:client_inside("tcp", VIP, PORT, 20)
    assert.same({}, kernel.failures(run.results))
    assert.same({ chosen.backend }, kernel.distinct(run.results, "backend"))
    assert_affinity_hits(env, 20)
  end)

  it("sweeps what no owner claimed after the first full sync, and nothing an owner took over", function()
    local env = core_env.open(pending)
    local before, services, backends, dp = loaded(env)
    assert(before:apply("service/a/one", entries("service/a/one",
      { frontend("127.10.0.1", PORT, endpoints(1, 3)), frontend("127.10.0.2", PORT, endpoints(1, 2)) })))
    assert(before:apply("service/b/two", entries("service/b/two", { frontend("127.10.0.3", PORT, endpoints(4, 5)) })))
    before:close()

    local after = assert(env.core.applier(dp))
    env:on_close(function()
      after:close()
    end)
    assert(after:read_back())
    -- while the agent was down, one's second frontend and all of two went away
    assert(after:apply("service/a/one", entries("service/a/one", { frontend("127.10.0.1", PORT, endpoints(1, 3)) })))
    assert.equals(3, #services:dump(), "nothing deleted before the sweep")
    local unclaimed = assert(after:shadow())
    assert.equals(2, #unclaimed.frontends)

    local stats = assert(after:sweep())
    assert.same({ written = 0, deleted = 2 }, stats.map_service)
    assert.same({ written = 0, deleted = 4 }, stats.map_backend)
    assert.is_nil(after:shadow())
    assert.equals(1, #services:dump())
    assert.same(endpoints(1, 3), slots(backends, "127.10.0.1", PORT))
    assert.equals(3, #backends:dump())
    assert.equals(0, assert(after:sweep()).deleted, "a second sweep finds nothing")
  end)

  it("refuses entries of the wrong size or with counts that do not match, naming the field", function()
    local env = core_env.open(pending)
    local applier = loaded(env)
    local bad = frontend(VIP, PORT, endpoints(1, 2))
    bad.backends[2] = ffi.new("struct service_value")
    local ok, err, code = applier:apply("service/default/web", entries("service/default/web", { bad }))
    assert.is_nil(ok)
    assert.equals("apply service/default/web: entries.frontends[1].backends[2]: 16 bytes given, "
      .. "the map's size is 8", err)
    assert.equals(-22, code)

    local wrong = frontend(VIP, PORT, endpoints(1, 2))
    wrong.value.total_count = 3
    ok, err = applier:apply("service/default/web", entries("service/default/web", { wrong }))
    assert.is_nil(ok)
    assert.equals("owner service/default/web: map_service key 127.10.0.1:80/TCP service: total_count 3, "
      .. "local_count 0 for 2 backends", err)

    ok, err = applier:apply("service/default/web", entries("service/default/other", {}))
    assert.is_nil(ok)
    assert.equals("apply service/default/web: entries.owner is service/default/other", err)
  end)
end)
