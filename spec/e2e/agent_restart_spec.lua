-- balancing-agent across a restart (ARCHITECTURE.md "Restart and upgrade";
-- issue 7): the real agent, standalone on a manifest directory, on the real
-- kernel, with real clients in a test cgroup. The pinned datapath keeps
-- translating while the agent is dead (kill -9); the restarted agent takes
-- the pinned maps over, removes what was deleted while it was down after its
-- first sync, and rewrites nothing that is still wanted; an endpoint added
-- under session affinity keeps every client on its backend (stable slots).
local cjson = require("cjson")
local ffi = require("ffi")
local abi = require("balancing.abi")
local core_env = require("helpers.core_env")
local scratch = require("helpers.scratch")
local agent_run = require("helpers.agent_run")

local eventually = agent_run.eventually
local KERNEL_FIXTURES = "spec/fixtures/kernel"
local FIXTURES = "spec/fixtures/agent_restart"

-- A ClusterIP Service s.name in namespace demo on s.vip:80 (ClientIP
-- affinity when s.affinity) whose one EndpointSlice lists s.addresses on
-- port s.port, all on node-1.
local function service_yaml(s)
  local endpoints = {}
  for i, address in ipairs(s.addresses) do
    endpoints[i] = "  - {addresses: [" .. address .. "], conditions: {ready: true}, nodeName: node-1}"
  end
  return table.concat({
    "apiVersion: v1", "kind: Service",
    "metadata: {name: " .. s.name .. ", namespace: demo, uid: " .. s.name .. "-uid}",
    "spec:",
    "  clusterIP: " .. s.vip,
    "  ports: [{name: http, port: 80, protocol: TCP}]",
    s.affinity and "  sessionAffinity: ClientIP" or "  sessionAffinity: None",
    "---",
    "apiVersion: discovery.k8s.io/v1", "kind: EndpointSlice",
    "metadata: {name: " .. s.name .. "-1, namespace: demo, labels: {kubernetes.io/service-name: " .. s.name .. "}}",
    "addressType: IPv4",
    "ports: [{name: http, port: " .. s.port .. ", protocol: TCP}]",
    "endpoints:",
    table.concat(endpoints, "\n"),
    "" }, "\n")
end

local NODE_YAML = table.concat({
  "apiVersion: v1", "kind: Node",
  "metadata: {name: node-1, annotations: {balancing.elf.io/nodeId: \"7\"}}",
  "status: {addresses: [{type: InternalIP, address: 127.0.0.1}]}", "" }, "\n")

-- Writes path whole, as an editor's rename-replace does.
local function replace_file(path, text)
  scratch.write_file(path .. ".tmp", text)
  assert(os.rename(path .. ".tmp", path))
end

-- The results of `client.py tcp VIP 80 count` run in the cgroup: a list of
-- the backends reached (or "errno N" for a failed attempt).
local function connect(cgroup, vip, count)
  local output = core_env.run_in_cgroup(cgroup, "exec python3 " .. KERNEL_FIXTURES .. "/client.py tcp " .. vip
    .. " 80 " .. count)
  local ok, run = pcall(cjson.decode, output)
  assert(ok and run.results, "client.py: " .. output)
  local reached = {}
  for i, result in ipairs(run.results) do
    reached[i] = result.backend or ("errno " .. tostring(result.errno))
  end
  return reached
end

local function tally(list)
  local counts = {}
  for _, item in ipairs(list) do
    counts[item] = (counts[item] or 0) + 1
  end
  return counts
end

-- Read-only views of the pinned maps (core.open_maps): the service entry of
-- vip:80/TCP and its backend slots.
local function open_maps(bpffs)
  return assert(require("balancing.core").open_maps(bpffs))
end

local function close_maps(maps)
  for _, map in pairs(maps) do
    map:close()
  end
end

local function service_entry(bpffs, vip)
  local maps = open_maps(bpffs)
  local raw = maps.map_service:lookup(abi.service_key(vip, 80, "TCP", "service"))
  close_maps(maps)
  return raw and core_env.decode("struct service_value", raw) or nil
end

-- { [slot] = "address:port" } of the frontend vip:80/TCP in map_backend.
local function backend_slots(bpffs, vip)
  local maps = open_maps(bpffs)
  local key_bytes = ffi.new("struct service_key[1]")
  key_bytes[0] = abi.service_key(vip, 80, "TCP", "service")
  local prefix = ffi.string(key_bytes, ffi.sizeof("struct service_key"))
  local slots = {}
  for _, entry in ipairs(assert(maps.map_backend:dump())) do
    if entry.key:sub(1, #prefix) == prefix then
      local key = core_env.decode("struct backend_key", entry.key)
      local value = core_env.decode("struct backend_value", entry.value)
      slots[tonumber(key.slot)] = abi.u32_to_ipv4(value.address) .. ":" .. abi.htons(value.port)
    end
  end
  close_maps(maps)
  return slots
end

local function count_keys(t)
  local n = 0
  for _ in pairs(t) do
    n = n + 1
  end
  return n
end

local function read_number(path)
  local file = io.open(path, "r")
  if not file then
    return nil
  end
  local n = file:read("*n")
  file:close()
  return n
end

describe("balancing-agent restarted", function()
  local env, dir, cgroup, bpffs, loop

  -- A test cgroup, a pin directory and a scratch directory of this spec's
  -- own; false (the spec pending) where the kernel specs cannot run.
  local function setup()
    env = core_env.open(pending)
    if not env then
      return false
    end
    dir = scratch.temp_dir()
    cgroup, bpffs = env:cgroup(), env:pin_dir()
    return true
  end

  after_each(function()
    local problems = {}
    local function try(fn, ...)
      local ok, err = pcall(fn, ...)
      if not ok then
        problems[#problems + 1] = tostring(err)
      end
    end
    if loop and dir then
      scratch.write_file(dir .. "/stop", "") -- a loop still running ends by itself too
    end
    try(agent_run.cleanup) -- agents, servers and the client loop, by pid
    if env and bpffs then
      local status, _, stderr = agent_run.uninstall(bpffs, cgroup, dir .. "/run")
      if status ~= 0 then
        problems[#problems + 1] = "uninstall: " .. stderr
      end
    end
    if dir then
      scratch.remove_dir(dir)
    end
    try(core_env.close_all) -- the cgroup, and any pin uninstall left
    env, dir, cgroup, bpffs, loop = nil, nil, nil, nil, nil
    assert(#problems == 0, table.concat(problems, "; "))
  end)

  -- The connect loop (spec/fixtures/agent_restart/connect_loop.py) in the
  -- test cgroup towards vip:80, at least at_least connections, each of
  -- which must reach one of backends; returns once it runs.
  local function start_loop(vip, at_least, backends)
    local pipe = core_env.spawn_in_cgroup(cgroup, string.format("exec python3 %s/connect_loop.py %s 80 %d %s %s %s",
      FIXTURES, vip, at_least, scratch.quote(dir .. "/stop"), scratch.quote(dir .. "/progress"),
      table.concat(backends, ",")))
    local line = pipe:read("*l")
    local pid = tonumber(line and line:match("^ready (%d+)$"))
    if not pid then
      error("connect_loop.py: " .. tostring(line) .. (pipe:read("*a") or ""))
    end
    agent_run.track(pid, "connect_loop.py", pipe)
    loop = { pipe = pipe, pid = pid }
    return loop
  end

  local function progress()
    return read_number(dir .. "/progress") or 0
  end

  -- Waits (at most seconds) until the loop has made `more` connections
  -- beyond what it had made when called.
  local function wait_connections(more, seconds)
    local from = progress()
    assert(eventually(seconds, function() return progress() >= from + more end),
      string.format("the loop made %d connections in %d s, not %d", progress() - from, seconds, more))
  end

  -- Lets the loop finish (it has at least its count and the stop file) and
  -- returns its report.
  local function finish_loop()
    scratch.write_file(dir .. "/stop", "")
    local output = loop.pipe:read("*a")
    loop.pipe:close()
    local ok, report = pcall(cjson.decode, output:match("[^\n]*{[^\n]*") or "")
    assert(ok, "connect_loop.py: " .. output)
    return report, output
  end

  it("kill -9 during 2,000 connects: none fails; the restart removes the Service deleted meanwhile", function()
    if not setup() then
      return
    end
    local servers = agent_run.spawn_json("python3 " .. KERNEL_FIXTURES .. "/servers.py tcp 127.0.0.1 127.0.0.1",
      "servers.py")
    local keep_vip, gone_vip = "127.10.0.81", "127.10.0.82"
    local keep_backend, gone_backend = servers.backends[1], servers.backends[2]
    local manifests = dir .. "/manifests"
    scratch.write_file(manifests .. "/keep.yaml", service_yaml({ name = "keep", vip = keep_vip,
      addresses = { "127.0.0.1" }, port = keep_backend:match(":(%d+)$") }))
    scratch.write_file(manifests .. "/gone.yaml", service_yaml({ name = "gone", vip = gone_vip,
      addresses = { "127.0.0.1" }, port = gone_backend:match(":(%d+)$") }))
    local options = { manifests = manifests, cgroup = cgroup, bpffs = bpffs, log = dir .. "/agent.log" }
    local agent = agent_run.start(options)
    assert.same({ keep_backend }, connect(cgroup, keep_vip, 1))
    assert.same({ gone_backend }, connect(cgroup, gone_vip, 1))
    assert.is_not_nil(service_entry(bpffs, gone_vip))
    assert.same({ [0] = gone_backend }, backend_slots(bpffs, gone_vip))

    start_loop(keep_vip, 2000, { keep_backend })
    wait_connections(200, 20) -- the agent alive
    agent:kill("KILL")
    os.remove(manifests .. "/gone.yaml") -- deleted while no agent runs
    wait_connections(300, 20) -- the agent dead: the pinned datapath alone
    assert.is_false(agent:alive())
    -- still there: nobody has removed it yet
    assert.same({ gone_backend }, connect(cgroup, gone_vip, 1))

    agent = agent_run.start(options) -- ready: its first sync is applied
    -- the deleted Service's frontend and slots are gone, right after that
    -- first sync (no waiting here), and a client to its VIP reaches no backend
    assert.is_nil(service_entry(bpffs, gone_vip))
    assert.same({}, backend_slots(bpffs, gone_vip))
    local reached = connect(cgroup, gone_vip, 1)[1]
    assert.equals("errno 111", reached) -- ECONNREFUSED: the VIP itself, where nothing listens
    -- the Service still there is programmed as before
    assert.same({ [0] = keep_backend }, backend_slots(bpffs, keep_vip))
    assert.equals(1, agent:metric("balancing_frontends"))
    -- by the sweep after the restarted agent's first sync: the frontend, then its slot
    local syncs = agent_run.log_lines(options.log, "first sync applied")
    assert.equals(2, #syncs, agent:log_tail())
    local swept = syncs[2].swept
    assert.is_table(swept, agent:log_tail())
    assert.same({ written = 0, deleted = 1 }, swept.map_service)
    assert.same({ written = 0, deleted = 1 }, swept.map_backend)
    wait_connections(200, 20) -- the restarted agent running

    local report, output = finish_loop()
    assert.is_false(report.capped, output)
    assert.equals(0, report.failures, output)
    assert.is_true(report.connects >= 2000, output)
    assert.equals(report.connects, report.backends[keep_backend], output)
    assert.is_true(agent:alive(), agent:log_tail())
    assert.is_nil(agent_run.sanitizer_report(options.log))
  end)

  it("keeps an affinity client on its backend while the EndpointSlice gains a third endpoint", function()
    if not setup() then
      return
    end
    local servers = agent_run.spawn_json("python3 " .. FIXTURES .. "/servers_one_port.py 127.0.0.1 127.0.0.2 "
      .. "127.0.0.3", "servers_one_port.py")
    local vip = "127.10.0.83"
    local service = { name = "sticky", vip = vip, affinity = true, addresses = { "127.0.0.1", "127.0.0.2" },
      port = servers.port }
    local manifests = dir .. "/manifests"
    scratch.write_file(manifests .. "/sticky.yaml", service_yaml(service))
    agent_run.start({ manifests = manifests, cgroup = cgroup, bpffs = bpffs, log = dir .. "/agent.log" })
    local entry = assert(service_entry(bpffs, vip))
    assert.equals(2, entry.total_count)
    assert.is_true(entry.affinity_seconds > 0)
    local slots_before = backend_slots(bpffs, vip)
    assert.equals(2, count_keys(slots_before))

    -- every connection of the client (its network namespace) to one backend
    local first = connect(cgroup, vip, 20)
    local backend = first[1]
    assert.is_truthy(backend == servers.backends[1] or backend == servers.backends[2], backend)
    assert.same({ [backend] = 20 }, tally(first))

    service.addresses = { "127.0.0.1", "127.0.0.2", "127.0.0.3" }
    replace_file(manifests .. "/sticky.yaml", service_yaml(service))
    assert.is_truthy(eventually(20, function()
      local now = service_entry(bpffs, vip)
      return now and now.total_count == 3
    end), "the agent did not program the third endpoint within 20 s")
    local slots_after = backend_slots(bpffs, vip)
    -- stable slots: the two backends kept theirs, the new one took the next
    assert.same({ [0] = slots_before[0], [1] = slots_before[1], [2] = servers.backends[3] }, slots_after)

    local after = connect(cgroup, vip, 20)
    assert.same({ [backend] = 20 }, tally(after))
    assert.is_nil(agent_run.sanitizer_report(dir .. "/agent.log"))
  end)

  -- The entries the agent writes (the maps' content in dump order, which
  -- a delete and re-add may change), every pinned map's ID, and the pinned
  -- links' IDs. A rewrite of an entry with the same bytes leaves no trace
  -- here: /metrics has no count of map writes to say it wrote none.
  local WRITTEN_MAPS = { "map_service", "map_backend", "map_node_ip", "map_node_proxy_ip", "map_configure" }
  local HOOKS = { "connect4", "sendmsg4", "recvmsg4", "getpeername4" }

  local function snapshot()
    local maps = open_maps(bpffs)
    local shot = { ids = {}, content = {}, links = {} }
    for name, map in pairs(maps) do
      shot.ids[name] = map.id
    end
    for _, name in ipairs(WRITTEN_MAPS) do
      assert(maps[name], name .. " is not pinned")
      local lines = {}
      for i, entry in ipairs(assert(maps[name]:dump())) do
        lines[i] = maps[name]:describe_key(entry.key) .. " = " .. entry.value:gsub(".", function(c)
          return string.format("%02x", c:byte())
        end)
      end
      shot.content[name] = lines
    end
    close_maps(maps)
    for _, hook in ipairs(HOOKS) do
      local _, out = scratch.run("bpftool -j link show pinned " .. scratch.quote(bpffs .. "/link_" .. hook))
      local ok, link = pcall(cjson.decode, out)
      assert(ok and type(link) == "table" and type(link.id) == "number", "bpftool link show: " .. out)
      shot.links[hook] = link.id
    end
    return shot
  end

  it("restarted on the same manifests, rewrites nothing: the same maps, entries and links", function()
    if not setup() then
      return
    end
    local servers = agent_run.spawn_json("python3 " .. FIXTURES .. "/servers_one_port.py 127.0.0.1 127.0.0.2",
      "servers_one_port.py")
    local manifests = dir .. "/manifests"
    scratch.write_file(manifests .. "/node.yaml", NODE_YAML)
    scratch.write_file(manifests .. "/web.yaml", service_yaml({ name = "web", vip = "127.10.0.84",
      addresses = { "127.0.0.1", "127.0.0.2" }, port = servers.port }))
    scratch.write_file(manifests .. "/sticky.yaml", service_yaml({ name = "sticky", vip = "127.10.0.85",
      affinity = true, addresses = { "127.0.0.2", "127.0.0.1" }, port = servers.port }))
    local options = { manifests = manifests, cgroup = cgroup, bpffs = bpffs, log = dir .. "/agent.log" }
    local agent = agent_run.start(options)
    local backends = { [servers.backends[1]] = true, [servers.backends[2]] = true }
    for _, reached in ipairs(connect(cgroup, "127.10.0.84", 4)) do
      assert.is_true(backends[reached], reached)
    end
    local before = snapshot()
    assert.equals(2, #before.content.map_service)
    assert.equals(4, #before.content.map_backend)
    assert.equals(1, #before.content.map_node_ip)

    agent:kill("TERM")
    agent = agent_run.start(options)

    local after = snapshot()
    assert.same(before.ids, after.ids)
    assert.same(before.links, after.links)
    for _, name in ipairs(WRITTEN_MAPS) do
      assert.same(before.content[name], after.content[name], name)
    end
    -- the restarted agent's first sync swept nothing: it took every entry over
    local syncs = agent_run.log_lines(options.log, "first sync applied")
    assert.equals(2, #syncs, agent:log_tail())
    local swept = syncs[2].swept
    assert.is_table(swept, agent:log_tail())
    assert.equals(0, swept.written)
    assert.equals(0, swept.deleted)
    -- and its applies wrote nothing either: every entry was read back as it was
    assert.equals(0, agent:metric("balancing_map_writes_total"))
    for _, reached in ipairs(connect(cgroup, "127.10.0.84", 4)) do
      assert.is_true(backends[reached], reached)
    end
    assert.is_nil(agent_run.sanitizer_report(options.log))
  end)

  it("an upgrade whose new object fails to load leaves the old datapath serving, every pin as it was", function()
    if not setup() then
      return
    end
    local servers = agent_run.spawn_json("python3 " .. FIXTURES .. "/servers_one_port.py 127.0.0.1 127.0.0.2",
      "servers_one_port.py")
    local manifests = dir .. "/manifests"
    scratch.write_file(manifests .. "/web.yaml", service_yaml({ name = "web", vip = "127.10.0.86",
      addresses = { "127.0.0.1", "127.0.0.2" }, port = servers.port }))
    local options = { manifests = manifests, cgroup = cgroup, bpffs = bpffs, log = dir .. "/agent.log" }
    local agent = agent_run.start(options)
    local backends = { [servers.backends[1]] = true, [servers.backends[2]] = true }
    for _, reached in ipairs(connect(cgroup, "127.10.0.86", 4)) do
      assert.is_true(backends[reached], reached)
    end
    agent:kill("TERM") -- the rolling update stops the old agent first
    local before = snapshot()

    -- the new version's object cannot be created: a map the kernel refuses (E2BIG)
    local status, stdout = scratch.run(string.format("env -u LD_PRELOAD BALANCING_MAX_AFFINITY=4294967295 "
      .. "BALANCING_MAX_SERVICES=4096 timeout 30 %s --manifests %s --cgroup %s --bpffs %s --listen 127.0.0.1:%d "
      .. "--node-name node-1 --run-dir %s", agent_run.AGENT, scratch.quote(manifests), scratch.quote(cgroup),
      scratch.quote(bpffs), core_env.free_port(), scratch.quote(agent_run.run_dir_of(manifests))))
    assert.equals(1, status, stdout)
    local refused
    for line in stdout:gmatch("[^\n]+") do
      local ok, doc = pcall(cjson.decode, line)
      if ok and doc.msg == "agent cannot start" then
        refused = doc
      end
    end
    assert.is_table(refused, stdout)
    assert.matches("^load: ", refused.error)

    local after = snapshot()
    assert.same(before.ids, after.ids)
    assert.same(before.links, after.links)
    for _, name in ipairs(WRITTEN_MAPS) do
      assert.same(before.content[name], after.content[name], name)
    end
    for _, reached in ipairs(connect(cgroup, "127.10.0.86", 8)) do
      assert.is_true(backends[reached], reached)
    end
  end)

  it("an upgrade that recreates a map keeps the old programs serving until the new maps are filled", function()
    if not setup() then
      return
    end
    local servers = agent_run.spawn_json("python3 " .. KERNEL_FIXTURES .. "/servers.py tcp 127.0.0.1",
      "servers.py")
    local vip, backend = "127.10.0.87", servers.backends[1]
    local manifests = dir .. "/manifests"
    scratch.write_file(manifests .. "/web.yaml", service_yaml({ name = "web", vip = vip,
      addresses = { "127.0.0.1" }, port = backend:match(":(%d+)$") }))
    local options = { manifests = manifests, cgroup = cgroup, bpffs = bpffs, log = dir .. "/agent.log" }
    local agent = agent_run.start(options)
    -- { hook = { id, prog_id } } of the pinned links
    local function pinned_links()
      local links = {}
      for _, hook in ipairs(HOOKS) do
        local _, out = scratch.run("bpftool -j link show pinned " .. scratch.quote(bpffs .. "/link_" .. hook))
        local ok, link = pcall(cjson.decode, out)
        assert(ok and type(link) == "table" and link.prog_id, "bpftool link show: " .. out)
        links[hook] = link
      end
      return links
    end
    local old_links = pinned_links()

    start_loop(vip, 1500, { backend })
    wait_connections(200, 20)
    agent:kill("TERM") -- the rolling update stops the old agent first
    wait_connections(200, 20)
    -- the new version: map_service of another size, so the load creates a new one
    options.env = "BALANCING_MAX_SERVICES=8192"
    agent = agent_run.start(options)
    wait_connections(300, 20)
    local report, output = finish_loop()
    assert.equals(0, report.failures, output)
    assert.equals(report.connects, report.backends[backend], output)

    -- the order in the new agent's log: deferred, filled, then attached
    local deferred = agent_run.log_lines(options.log, "attach deferred until the new maps are filled")
    assert.equals(1, #deferred, agent:log_tail())
    assert.matches("map_service", deferred[1].created, 1, true)
    local text = assert(scratch.read_file(options.log))
    local filled = select(2, text:find('"first sync applied"', text:find("attach deferred", 1, true), true))
    local attached = text:find('"programs attached"', filled or 1, true)
    assert.is_truthy(filled, agent:log_tail())
    local without_events = text:gsub("[^\n]*formatted ebpf event[^\n]*\n", "")
    assert.is_truthy(attached, "no \"programs attached\" after the first sync: " .. without_events)
    -- the same links, the new programs behind them
    local links = pinned_links()
    for hook, link in pairs(old_links) do
      assert.equals(link.id, links[hook].id, hook)
      assert.are_not.equal(link.prog_id, links[hook].prog_id, hook)
    end
    assert.same({ backend }, connect(cgroup, vip, 1))
  end)
end)
