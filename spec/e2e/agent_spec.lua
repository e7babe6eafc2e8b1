-- balancing-agent's run mode, standalone (--manifests): the real agent on the
-- real kernel with real clients in a test cgroup (CONTRACTS.md; issue 7). It
-- programs the directory's objects, follows a change within a second, answers
-- /healthz, /readyz and /metrics, and on SIGTERM leaves the datapath working.
local agent_run = require("helpers.agent_run")
local cjson = require("cjson")
local core_env = require("helpers.core_env")
local scratch = require("helpers.scratch")

local eventually, http_get = agent_run.eventually, agent_run.http_get
local FIXTURES = "spec/fixtures/kernel"
local VIP = "127.10.0.78"

-- The Service (default web on VIP) and its EndpointSlice: one endpoint,
-- 127.0.0.1 on backend_port.
local function service_yaml(backend_port, name, vip)
  name, vip = name or "web", vip or VIP
  return table.concat({
    "apiVersion: v1", "kind: Service",
    "metadata: {name: " .. name .. ", namespace: demo, uid: " .. name .. "-uid}",
    "spec: {clusterIP: " .. vip .. ", ports: [{name: http, port: 80}]}",
    "---",
    "apiVersion: discovery.k8s.io/v1", "kind: EndpointSlice",
    "metadata: {name: " .. name .. "-1, namespace: demo, labels: {kubernetes.io/service-name: " .. name .. "}}",
    "addressType: IPv4",
    "ports: [{name: http, port: " .. backend_port .. "}]",
    "endpoints: [{addresses: [127.0.0.1]}]", "" }, "\n")
end

local function connect_once(cgroup, vip)
  return agent_run.connect_once(cgroup, vip or VIP)
end


describe("balancing-agent, standalone", function()
  local env, dir, agent_pid
  after_each(function()
    agent_run.teardown(dir) -- the agent and the backends, by pid
    agent_pid = nil
    dir = nil
  end)

  -- Two backends, the agent on a manifest directory pointing at the first.
  local function start()
    env = core_env.open(pending)
    if not env then
      return nil
    end
    dir = scratch.temp_dir()
    local info = agent_run.spawn_json("python3 " .. FIXTURES .. "/servers.py tcp 127.0.0.1 127.0.0.1", "servers.py")
    local first, second = info.backends[1]:match(":(%d+)$"), info.backends[2]:match(":(%d+)$")
    scratch.write_file(dir .. "/manifests/web.yaml", service_yaml(first))
    local agent = agent_run.start({ manifests = dir .. "/manifests", cgroup = env:cgroup(), bpffs = env:pin_dir(),
      log = dir .. "/agent.log", ready_seconds = 10 })
    agent_pid = agent.pid
    return { cgroup = agent.cgroup, bpffs = agent.bpffs, port = agent.port, first = info.backends[1],
      second = info.backends[2], second_port = second }
  end

  it("programs the directory's Services: a client reaches the backend through the VIP", function()
    local agent = start()
    assert.equals(agent.first, eventually(5, function() return connect_once(agent.cgroup) end))
  end)

  it("logs each translation as a formatted ebpf event line with the contract's fields", function()
    local agent = start()
    assert.equals(agent.first, eventually(5, function() return connect_once(agent.cgroup) end))
    local event = eventually(5, function()
      for line in io.lines(dir .. "/agent.log") do
        local ok, doc = pcall(cjson.decode, line)
        if ok and doc.msg == "formatted ebpf event" and doc.destIp == VIP then
          return doc
        end
      end
    end)
    assert.is_table(event, "no event line for the VIP in the agent's log")
    assert.equals(80, event.destPort)
    assert.equals(agent.first, event.natIp .. ":" .. event.natPort)
    assert.is_true(event.isSuccess)
    assert.equals("demo/web", event.policyName)
    assert.equals("service", event.natType)
    assert.equals("node-1", event.nodeName)
    -- the client, gone by then, ran in the test cgroup, no pod's: a host process
    assert.is_true(event.isHostApp)
    assert.equals("", event.clientPodUid)
  end)

  it("follows a change of the directory within a second", function()
    local agent = start()
    assert.equals(agent.first, eventually(5, function() return connect_once(agent.cgroup) end))
    local changed_at = os.time()
    scratch.write_file(dir .. "/manifests/web.yaml.tmp", service_yaml(agent.second_port))
    os.rename(dir .. "/manifests/web.yaml.tmp", dir .. "/manifests/web.yaml") -- an editor's rename-replace
    local reached = eventually(5, function()
      return connect_once(agent.cgroup) == agent.second
    end)
    assert.is_true(reached)
    assert.is_true(os.time() - changed_at <= 2, "followed within a second (whole-second clock)")
  end)

  it("follows a ConfigMap-style update: the ..data symlink swapped to a new directory", function()
    local agent = start()
    assert.equals(agent.first, eventually(5, function() return connect_once(agent.cgroup) end))
    -- the kubelet's layout: files are symlinks through ..data to a timestamped directory
    local manifests = dir .. "/manifests"
    os.remove(manifests .. "/web.yaml")
    scratch.write_file(manifests .. "/..2026_11_30_1/web.yaml", service_yaml(agent.first:match(":(%d+)$")))
    assert(os.execute("ln -s ..2026_11_30_1 " .. scratch.quote(manifests .. "/..data")) == 0)
    assert(os.execute("ln -s ..data/web.yaml " .. scratch.quote(manifests .. "/web.yaml")) == 0)
    assert.equals(agent.first, eventually(5, function() return connect_once(agent.cgroup) end))
    -- an update: a new directory, a new ..data link renamed over the old one
    scratch.write_file(manifests .. "/..2026_11_30_2/web.yaml", service_yaml(agent.second_port))
    assert(os.execute("ln -s ..2026_11_30_2 " .. scratch.quote(manifests .. "/..data_tmp")) == 0)
    assert(os.rename(manifests .. "/..data_tmp", manifests .. "/..data"))
    assert.is_true(eventually(5, function() return connect_once(agent.cgroup) == agent.second end))
  end)

  it("says a full map with the owner it refused, in the log and the metrics, and keeps serving the rest", function()
    env = core_env.open(pending)
    if not env then
      return
    end
    dir = scratch.temp_dir()
    local info = agent_run.spawn_json("python3 " .. FIXTURES .. "/servers.py tcp 127.0.0.1 127.0.0.1", "servers.py")
    local port = info.backends[1]:match(":(%d+)$")
    -- three Services, room for two frontends
    for i = 1, 3 do
      scratch.write_file(dir .. "/manifests/web" .. i .. ".yaml",
        service_yaml(port, "web" .. i, "127.10.0." .. (80 + i)))
    end
    local agent = agent_run.start({ manifests = dir .. "/manifests", cgroup = env:cgroup(), bpffs = env:pin_dir(),
      log = dir .. "/agent.log", env = "BALANCING_MAX_SERVICES=2" })
    agent_pid = agent.pid
    local refused = agent_run.log_lines(agent.log, "apply failed")
    assert.is_true(#refused >= 1, agent:log_tail())
    assert.matches("^service/demo/web%d$", refused[1].owner)
    assert.matches("map_service", refused[1].error, 1, true)
    assert.matches("map is full (max_entries 2)", refused[1].error, 1, true)
    assert.is_true(agent:metric("balancing_map_write_errors_total") >= 1)
    local served = 0
    for i = 1, 3 do
      if connect_once(agent.cgroup, "127.10.0." .. (80 + i)) == info.backends[1] then
        served = served + 1
      end
    end
    assert.equals(2, served)
  end)

  it("answers /healthz, /readyz and /metrics", function()
    local agent = start()
    assert.equals(200, http_get(agent.port, "/healthz"))
    assert.equals(200, http_get(agent.port, "/readyz"))
    local code, metrics = http_get(agent.port, "/metrics")
    assert.equals(200, code)
    assert.matches("\nbalancing_frontends 1\n", "\n" .. metrics)
    assert.matches("\nbalancing_backends 1\n", "\n" .. metrics)
    assert.equals(404, http_get(agent.port, "/nothing"))
  end)

  it("on SIGTERM exits 0 and leaves the datapath pinned, attached and translating", function()
    local agent = start()
    assert.equals(agent.first, eventually(5, function() return connect_once(agent.cgroup) end))
    os.execute("kill -TERM " .. agent_pid)
    assert.is_true(eventually(5, function() return not agent_run.alive(agent_pid, "balancing-agent") end))
    local _, count = core_env.cgroup_programs(agent.cgroup)
    assert.equals(4, count)
    assert.equals(agent.first, connect_once(agent.cgroup))
    local log = io.open(dir .. "/agent.log"):read("*a")
    assert.matches('"msg":"stopping: the datapath stays pinned and attached"', log, 1, true)
    -- (under BALANCING_SANITIZE=1 the agent is an ASan/UBSan build: nothing reported)
    assert.is_nil(log:find("Sanitizer", 1, true), log)
    assert.is_nil(log:find("runtime error:", 1, true), log)
  end)

end)
