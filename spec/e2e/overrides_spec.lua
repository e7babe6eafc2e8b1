-- Lua overrides (docs/lua-hooks.md; issue 8): the two worked examples of
-- examples/overrides/ previewed with `plan --lua-dir`, and swapped into the
-- real agent while it runs — the agent on a manifest directory and an
-- override directory of the spec's own, the override published as a
-- ConfigMap publishes it (a new directory behind the ..data symlink), the
-- pinned maps and real clients showing the change; then a broken override
-- refused with one log line while the maps stay as they were.
local cjson = require("cjson")
local ffi = require("ffi")
local lfs = require("lfs")
local abi = require("balancing.abi")
local agent_run = require("helpers.agent_run")
local core_env = require("helpers.core_env")
local scratch = require("helpers.scratch")

local eventually = agent_run.eventually
local AGENT = agent_run.AGENT
local EXAMPLES = "examples/overrides"
local PREFER_ZONE = EXAMPLES .. "/prefer-zone/lua/balancing/reconcile/service.lua"
local KUBE_PROXY_NAMESPACE = EXAMPLES .. "/kube-proxy-namespace/lua/balancing/reconcile/service.lua"
local SERVICE_MODULE = "balancing/reconcile/service.lua"
local REFUSED = "Lua override refused: the running modules stay"
local LOADED = "Lua overrides loaded: every owner is reconciled again"

-- `balancing-agent plan ... --json` → status, the document (nil when stdout
-- is not JSON), stderr.
local function plan(args)
  local quoted = {}
  for i, arg in ipairs(args) do
    quoted[i] = scratch.quote(arg)
  end
  local status, stdout, stderr = scratch.run("env -u NODE_NAME -u BALANCING_MANIFESTS -u BALANCING_LUA_DIR "
    .. "-u BALANCING_LOG_LEVEL " .. AGENT .. " plan --json " .. table.concat(quoted, " "))
  local ok, document = pcall(cjson.decode, stdout)
  return status, ok and document or nil, stderr
end

-- { owner = "address:port,..." } of a plan's frontends.
local function planned_backends(document)
  local out = {}
  for _, frontend in ipairs(document.frontends) do
    local backends = {}
    for i, backend in ipairs(frontend.backends) do
      backends[i] = backend.address .. ":" .. backend.port
    end
    out[frontend.owner] = table.concat(backends, ",")
  end
  return out
end

describe("the override examples through plan --lua-dir", function()
  local ZONE_MANIFESTS = EXAMPLES .. "/prefer-zone/manifests"
  local NAMESPACE_MANIFESTS = EXAMPLES .. "/kube-proxy-namespace/manifests"

  it("prefer-zone: each node keeps the backends of its own zone, its own first", function()
    local status, document = plan({ "--manifests", ZONE_MANIFESTS, "--node-name", "node-1" })
    assert.equals(0, status)
    assert.same({ ["default/web"] = "10.244.1.5:8080,10.244.2.7:8080,10.244.3.9:8080" }, planned_backends(document))
    status, document = plan({ "--manifests", ZONE_MANIFESTS, "--node-name", "node-1", "--lua-dir",
      EXAMPLES .. "/prefer-zone/lua" })
    assert.equals(0, status)
    assert.same({ ["default/web"] = "10.244.1.5:8080,10.244.3.9:8080" }, planned_backends(document))
    status, document = plan({ "--manifests", ZONE_MANIFESTS, "--node-name", "node-2", "--lua-dir",
      EXAMPLES .. "/prefer-zone/lua" })
    assert.equals(0, status)
    assert.same({ ["default/web"] = "10.244.2.7:8080" }, planned_backends(document))
    assert.is_true(document.frontends[1].backends[1]["local"])
  end)

  it("kube-proxy-namespace: the legacy namespace's Services get no frontend, the others are as before", function()
    local status, document = plan({ "--manifests", NAMESPACE_MANIFESTS, "--node-name", "node-1" })
    assert.equals(0, status)
    assert.same({ ["default/web"] = "10.244.1.5:8080", ["legacy/billing"] = "10.244.1.6:8080" },
      planned_backends(document))
    local stderr
    status, document, stderr = plan({ "--manifests", NAMESPACE_MANIFESTS, "--node-name", "node-1", "--lua-dir",
      EXAMPLES .. "/kube-proxy-namespace/lua" })
    assert.equals(0, status)
    assert.same({ ["default/web"] = "10.244.1.5:8080" }, planned_backends(document))
    assert.matches('"msg":"Service left to kube-proxy by an override"', stderr, 1, true)
    assert.matches('"owner":"service/legacy/billing"', stderr, 1, true)
  end)
end)

-- A ClusterIP Service namespace/name on vip:80 whose EndpointSlices are
-- given as { { address, port, zone } }, one slice each (two loopback
-- backends have two ports).
local function service_yaml(namespace, name, vip, endpoints, annotations)
  local lines = {
    "apiVersion: v1", "kind: Service",
    "metadata: {name: " .. name .. ", namespace: " .. namespace .. ", uid: " .. name .. "-uid"
      .. (annotations and ", annotations: " .. annotations or "") .. "}",
    "spec: {clusterIP: " .. vip .. ", ports: [{name: http, port: 80}]}",
  }
  for i, endpoint in ipairs(endpoints) do
    lines[#lines + 1] = "---"
    lines[#lines + 1] = "apiVersion: discovery.k8s.io/v1"
    lines[#lines + 1] = "kind: EndpointSlice"
    lines[#lines + 1] = "metadata: {name: " .. name .. "-" .. i .. ", namespace: " .. namespace
      .. ", labels: {kubernetes.io/service-name: " .. name .. "}}"
    lines[#lines + 1] = "addressType: IPv4"
    lines[#lines + 1] = "ports: [{name: http, port: " .. endpoint.port .. "}]"
    lines[#lines + 1] = "endpoints: [{addresses: [" .. endpoint.address .. "], conditions: {ready: true}"
      .. (endpoint.zone and ", zone: " .. endpoint.zone or "") .. "}]"
  end
  return table.concat(lines, "\n") .. "\n"
end

local NODE_YAML = table.concat({ "apiVersion: v1", "kind: Node",
  "metadata: {name: node-1, labels: {topology.kubernetes.io/zone: zone-a}, "
    .. "annotations: {balancing.elf.io/nodeId: \"1\"}}", "" }, "\n")

-- { [slot] = "address:port" } of the frontend vip:80/TCP in the pinned
-- map_backend, and the frontend's service entry (nil when it has none).
local function programmed(bpffs, vip)
  local maps = assert(require("balancing.core").open_maps(bpffs))
  local key = abi.service_key(vip, 80, "TCP", "service")
  local raw = maps.map_service:lookup(key)
  local key_bytes = ffi.new("struct service_key[1]")
  key_bytes[0] = key
  local prefix = ffi.string(key_bytes, ffi.sizeof("struct service_key"))
  local slots = {}
  for _, entry in ipairs(assert(maps.map_backend:dump())) do
    if entry.key:sub(1, #prefix) == prefix then
      local slot = core_env.decode("struct backend_key", entry.key).slot
      local value = core_env.decode("struct backend_value", entry.value)
      slots[tonumber(slot)] = abi.u32_to_ipv4(value.address) .. ":" .. abi.ntohs(value.port)
    end
  end
  for _, map in pairs(maps) do
    map:close()
  end
  local service = raw and core_env.decode("struct service_value", raw) -- (lookup: false when absent)
  return slots, service and tonumber(service.total_count) or nil
end

-- An override of the Service module that runs body (Lua lines with store,
-- ctx, namespace and name in scope) before the built-in module's desired.
local function service_override(body)
  return table.concat({
    "local builtin = dofile(package.loaded['balancing.host'].builtin_dir .. '/" .. SERVICE_MODULE .. "')",
    "return { desired = function(store, ctx, namespace, name)",
    body,
    "  return builtin.desired(store, ctx, namespace, name)",
    "end }", "" }, "\n")
end

-- The backends count connections from inside cgroup to vip:80 reached:
-- { ["127.0.0.1:port"] = n }, and the number that reached none.
local function reached(cgroup, vip, count)
  local output = core_env.run_in_cgroup(cgroup, "exec python3 spec/fixtures/kernel/client.py tcp " .. vip .. " 80 "
    .. count)
  local run = cjson.decode(output)
  local backends, failed = {}, 0
  for _, result in ipairs(run.results) do
    if result.backend then
      backends[result.backend] = (backends[result.backend] or 0) + 1
    else
      failed = failed + 1
    end
  end
  return backends, failed
end

describe("live Lua overrides in the running agent", function()
  local env, dir, lua_dir, versions
  after_each(function()
    agent_run.cleanup()
    -- (under BALANCING_SANITIZE=1 the agent is an ASan/UBSan build: nothing reported)
    local report = dir and agent_run.sanitizer_report(dir .. "/agent.log")
    if dir then
      scratch.remove_dir(dir)
      dir = nil
    end
    core_env.close_all()
    assert.is_nil(report)
  end)

  -- Publishes files ({ [relative path] = text }) as the kubelet updates a
  -- ConfigMap volume: a new hidden directory, the ..data symlink renamed
  -- onto it, the top-level names pointing through ..data.
  local function publish(files)
    versions = versions + 1
    local version = "..2026_11_30_21_00_" .. versions
    local tops = {}
    for path, text in pairs(files) do
      scratch.write_file(lua_dir .. "/" .. version .. "/" .. path, text)
      tops[path:match("^[^/]+")] = true
    end
    assert(os.execute("ln -s " .. version .. " " .. scratch.quote(lua_dir .. "/..data_tmp")) == 0)
    assert(os.rename(lua_dir .. "/..data_tmp", lua_dir .. "/..data"))
    for top in pairs(tops) do
      if not lfs.symlinkattributes(lua_dir .. "/" .. top) then
        assert(os.execute("ln -s ..data/" .. top .. " " .. scratch.quote(lua_dir .. "/" .. top)) == 0)
      end
    end
  end

  -- The agent on manifests (text) and an override directory (empty, or
  -- with files published before it starts); backends on 127.0.0.1 and
  -- 127.0.0.2. nil when the kernel specs cannot run.
  local function start(manifests_of, files)
    env = core_env.open(pending)
    if not env then
      return nil
    end
    dir = scratch.temp_dir()
    lua_dir, versions = dir .. "/lua", 0
    assert(os.execute("mkdir -p " .. scratch.quote(lua_dir)) == 0)
    if files then
      publish(files)
    end
    local info = agent_run.spawn_json("python3 spec/fixtures/kernel/servers.py tcp 127.0.0.1 127.0.0.2", "servers.py")
    local backends = { first = info.backends[1], second = info.backends[2],
      first_port = info.backends[1]:match(":(%d+)$"), second_port = info.backends[2]:match(":(%d+)$") }
    scratch.write_file(dir .. "/manifests/objects.yaml", manifests_of(backends))
    local agent = agent_run.start({ manifests = dir .. "/manifests", cgroup = env:cgroup(), bpffs = env:pin_dir(),
      log = dir .. "/agent.log", lua_dir = lua_dir, ready_seconds = 10 })
    agent.backends = backends
    return agent
  end

  local function reloads(agent, result)
    return agent_run.metric_value(agent.port, "balancing_lua_reloads_total", { result = result })
  end

  -- The node and Service demo/web on vip: 127.0.0.1 in zone-a (the node's),
  -- 127.0.0.2 in zone-b.
  local function zone_manifests(vip)
    return function(backends)
      return NODE_YAML .. "---\n" .. service_yaml("demo", "web", vip, {
        { address = "127.0.0.1", port = backends.first_port, zone = "zone-a" },
        { address = "127.0.0.2", port = backends.second_port, zone = "zone-b" } })
    end
  end

  describe("prefer-zone", function()
    local VIP = "127.10.0.91"
    local manifests = zone_manifests(VIP)

    it("is swapped in by a ConfigMap update: the maps keep the node's zone; a broken one is refused", function()
      local agent = start(manifests)
      if not agent then
        return
      end
      local b = agent.backends
      assert.same({ [0] = b.first, [1] = b.second }, eventually(5, function()
        local slots = programmed(agent.bpffs, VIP)
        return slots[1] and slots
      end))

      publish({ [SERVICE_MODULE] = assert(scratch.read_file(PREFER_ZONE)) })
      assert.is_true(eventually(5, function()
        local slots, count = programmed(agent.bpffs, VIP)
        return count == 1 and slots[0] == b.first and slots[1] == nil
      end), agent:log_tail())
      local loaded = agent_run.log_lines(agent.log, LOADED)
      assert.equals(1, #loaded)
      assert.equals("balancing.reconcile.service", loaded[1].modules)
      assert.equals(lua_dir .. "/" .. SERVICE_MODULE, loaded[1].overrides)
      assert.equals(1, reloads(agent, "accepted"))
      assert.same({ [b.first] = 10 }, (reached(agent.cgroup, VIP, 10)))

      -- a broken override: refused with one line, the maps stay
      publish({ [SERVICE_MODULE] = "local M = {\nreturn M\n" })
      assert.equals(1, eventually(5, function() return reloads(agent, "refused") == 1 and 1 end), agent:log_tail())
      local refused = agent_run.log_lines(agent.log, REFUSED)
      assert.equals(1, #refused)
      assert.equals("error", refused[1].level)
      assert.equals("balancing.reconcile.service", refused[1].module)
      assert.equals(lua_dir .. "/" .. SERVICE_MODULE, refused[1].file)
      assert.matches(lua_dir .. "/" .. SERVICE_MODULE .. ":2: ", refused[1].error, 1, true)
      local slots, count = programmed(agent.bpffs, VIP)
      assert.same({ [0] = b.first }, slots)
      assert.equals(1, count)
      assert.same({ [b.first] = 5 }, (reached(agent.cgroup, VIP, 5)))

      -- the same broken module again, with a module that cannot be swapped
      -- live beside it: that one is said once, the refusal is not repeated
      publish({ [SERVICE_MODULE] = "local M = {\nreturn M\n", ["balancing/selector.lua"] = "return {}\n" })
      local not_live = eventually(5, function()
        local lines = agent_run.log_lines(agent.log, "Lua override not swapped live: restart the agent to use it")
        return #lines > 0 and lines
      end)
      assert.is_table(not_live, agent:log_tail())
      assert.equals(1, #not_live)
      assert.equals("balancing.selector", not_live[1].module)
      assert.equals(1, #agent_run.log_lines(agent.log, REFUSED))
      assert.equals(1, reloads(agent, "refused"))
      assert.is_true(agent:alive())
    end)
  end)

  describe("an override in the directory when the agent starts", function()
    local VIP = "127.10.0.95"
    local manifests = zone_manifests(VIP)

    it("is checked against the complete store at the first sync, and runs from it", function()
      local agent = start(manifests, { [SERVICE_MODULE] = assert(scratch.read_file(PREFER_ZONE)) })
      if not agent then
        return
      end
      assert.same({ [0] = agent.backends.first }, (programmed(agent.bpffs, VIP)))
      assert.equals(1, #agent_run.log_lines(agent.log, LOADED))
      assert.equals(1, reloads(agent, "accepted"))
    end)

    it("is refused when broken, with one line, and the built-in module runs", function()
      local agent = start(manifests, { [SERVICE_MODULE] = "return { desired = 42 }\n" })
      if not agent then
        return
      end
      assert.same({ [0] = agent.backends.first, [1] = agent.backends.second }, (programmed(agent.bpffs, VIP)))
      local refused = agent_run.log_lines(agent.log, REFUSED)
      assert.equals(1, #refused)
      assert.matches("no function desired", refused[1].error, 1, true)
      assert.equals(0, reloads(agent, "accepted"))
      assert.equals(1, reloads(agent, "refused"))
    end)
  end)

  describe("kube-proxy-namespace", function()
    local WEB_VIP, BILLING_VIP, API_VIP = "127.10.0.92", "127.10.0.93", "127.10.0.94"

    local function manifests(backends, web_annotations)
      local first = { { address = "127.0.0.1", port = backends.first_port } }
      return NODE_YAML .. "---\n" .. service_yaml("demo", "web", WEB_VIP, first, web_annotations) .. "---\n"
        .. service_yaml("legacy", "billing", BILLING_VIP, first)
    end

    it("is swapped in live: the namespace's frontends leave the maps, the others stay", function()
      local agent = start(manifests)
      if not agent then
        return
      end
      local b = agent.backends
      assert.equals(b.first, eventually(5, function() return agent_run.connect_once(agent.cgroup, BILLING_VIP) end))

      publish({ [SERVICE_MODULE] = assert(scratch.read_file(KUBE_PROXY_NAMESPACE)) })
      assert.is_true(eventually(5, function() return select(2, programmed(agent.bpffs, BILLING_VIP)) == nil end),
        agent:log_tail())
      local _, failed = reached(agent.cgroup, BILLING_VIP, 1) -- nothing listens on the VIP itself
      assert.equals(1, failed)
      assert.same({ [b.first] = 3 }, (reached(agent.cgroup, WEB_VIP, 3)))

      -- an override that fails the dry reconcile for one owner: refused
      -- naming it, and the maps stay
      publish({ [SERVICE_MODULE] = service_override("  if namespace == 'legacy' then error('no legacy today') end") })
      local refused = eventually(5, function()
        local lines = agent_run.log_lines(agent.log, REFUSED)
        return #lines > 0 and lines
      end)
      assert.is_table(refused, agent:log_tail())
      assert.equals(1, #refused)
      assert.equals("service/legacy/billing", refused[1].owner)
      assert.matches("no legacy today", refused[1].error, 1, true)
      assert.is_nil(select(2, programmed(agent.bpffs, BILLING_VIP)))
      assert.same({ [b.first] = 3 }, (reached(agent.cgroup, WEB_VIP, 3)))
    end)

    it("an accepted override that fails at run time for one owner: that owner keeps its entries, the rest goes on",
      function()
        local agent = start(manifests)
        if not agent then
          return
        end
        local b = agent.backends
        assert.equals(b.first, eventually(5, function() return agent_run.connect_once(agent.cgroup, WEB_VIP) end))
        -- fails for a Service annotated so, which none is yet
        publish({ [SERVICE_MODULE] = service_override(table.concat({
          "  local service = store:get('Service', namespace, name)",
          "  if service and (service.metadata.annotations or {})['spec.example/fail'] then",
          "    error('asked to fail')",
          "  end" }, "\n")) })
        assert.equals(1, eventually(5, function() return reloads(agent, "accepted") == 1 and 1 end), agent:log_tail())

        -- one write: web annotated (and moved to the second backend), a new
        -- Service api beside it
        local text = manifests(b, "{spec.example/fail: \"yes\"}"):gsub("port: " .. b.first_port .. "}",
          "port: " .. b.second_port .. "}", 1)
        text = text .. "---\n" .. service_yaml("demo", "api", API_VIP, { { address = "127.0.0.2",
          port = b.second_port } })
        scratch.write_file(dir .. "/manifests/objects.yaml.tmp", text)
        assert(os.rename(dir .. "/manifests/objects.yaml.tmp", dir .. "/manifests/objects.yaml"))

        assert.equals(b.second, eventually(5, function() return agent_run.connect_once(agent.cgroup, API_VIP) end))
        local failed = agent_run.log_lines(agent.log, "reconcile failed")
        assert.equals(1, #failed)
        assert.equals("service/demo/web", failed[1].owner)
        assert.equals("balancing.reconcile.service", failed[1].module)
        assert.matches("asked to fail", failed[1].error, 1, true)
        assert.equals(1, agent:metric("balancing_lua_errors_total"))
        -- web kept what it had: the first backend
        assert.same({ [b.first] = 3 }, (reached(agent.cgroup, WEB_VIP, 3)))
        assert.same({ [0] = b.first }, (programmed(agent.bpffs, WEB_VIP)))
      end)
  end)
end)
