-- balancing-agent's run mode, standalone (--manifests): the real agent on the
-- real kernel with real clients in a test cgroup (CONTRACTS.md; issue 7). It
-- programs the directory's objects, follows a change within a second, answers
-- /healthz, /readyz and /metrics, and on SIGTERM leaves the datapath working.
local cjson = require("cjson")
local core_env = require("helpers.core_env")
local scratch = require("helpers.scratch")

local build_dir = os.getenv("BALANCING_BUILD_DIR") or "build"
local AGENT = build_dir .. "/bin/balancing-agent"
local FIXTURES = "spec/fixtures/kernel"
local VIP = "127.10.0.78"

local function service_yaml(backend_port)
  return table.concat({
    "apiVersion: v1", "kind: Service",
    "metadata: {name: web, namespace: demo, uid: web-uid}",
    "spec: {clusterIP: " .. VIP .. ", ports: [{name: http, port: 80}]}",
    "---",
    "apiVersion: discovery.k8s.io/v1", "kind: EndpointSlice",
    "metadata: {name: web-1, namespace: demo, labels: {kubernetes.io/service-name: web}}",
    "addressType: IPv4",
    "ports: [{name: http, port: " .. backend_port .. "}]",
    "endpoints: [{addresses: [127.0.0.1]}]", "" }, "\n")
end

-- Waits until check() is true, polling, at most seconds; returns its last value.
local function eventually(seconds, check)
  local deadline = os.time() + seconds
  local value = check()
  while not value and os.time() <= deadline do
    os.execute("sleep 0.05")
    value = check()
  end
  return value
end

local function http_get(port, path)
  local status, body = scratch.run(string.format("curl -s -w '\\n%%{http_code}' --max-time 2 http://127.0.0.1:%d%s",
    port, path))
  if status ~= 0 then
    return nil
  end
  local text, code = body:match("^(.*)\n(%d+)$")
  return tonumber(code), text
end

-- The backend one connect from inside the cgroup reached ("127.0.0.1:port"), or nil.
local function connect_once(cgroup)
  local _, out = scratch.run("sh -c " .. scratch.quote("echo $$ > " .. scratch.quote(cgroup .. "/cgroup.procs")
    .. " && exec python3 " .. FIXTURES .. "/client.py tcp " .. VIP .. " 80 1"))
  local ok, run = pcall(cjson.decode, out)
  return ok and run.results and run.results[1] and run.results[1].backend or nil
end

local function process_alive(pid)
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == 0
end

describe("balancing-agent, standalone", function()
  local env, dir, servers_pid, agent_pid
  after_each(function()
    if agent_pid and process_alive(agent_pid) then
      os.execute("kill -KILL " .. agent_pid)
    end
    if servers_pid then
      os.execute("kill " .. servers_pid .. " 2>/dev/null")
    end
    agent_pid, servers_pid = nil, nil
    if dir then
      scratch.remove_dir(dir)
      dir = nil
    end
    core_env.close_all()
  end)

  -- Two backends, the agent on a manifest directory pointing at the first.
  local function start()
    env = core_env.open(pending)
    if not env then
      return nil
    end
    dir = scratch.temp_dir()
    local pipe = assert(io.popen("exec env -u LD_PRELOAD python3 " .. FIXTURES
      .. "/servers.py tcp 127.0.0.1 127.0.0.1"))
    local info = cjson.decode(pipe:read("*l"))
    servers_pid = info.pid
    local first, second = info.backends[1]:match(":(%d+)$"), info.backends[2]:match(":(%d+)$")
    scratch.write_file(dir .. "/manifests/web.yaml", service_yaml(first))
    local cgroup, bpffs, port = env:cgroup(), env:pin_dir(), core_env.free_port()
    local launch = assert(io.popen(string.format("env -u LD_PRELOAD %s --manifests %s --cgroup %s --bpffs %s "
      .. "--listen 127.0.0.1:%d --node-name node-1 >%s 2>&1 & echo $!", AGENT, scratch.quote(dir .. "/manifests"),
      scratch.quote(cgroup), scratch.quote(bpffs), port, scratch.quote(dir .. "/agent.log"))))
    agent_pid = tonumber(launch:read("*l"))
    launch:close()
    local ready = eventually(10, function() return http_get(port, "/readyz") == 200 end)
    assert(ready, "the agent was not ready within 10 s")
    return { cgroup = cgroup, bpffs = bpffs, port = port, first = info.backends[1], second = info.backends[2],
      second_port = second }
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
    assert.is_true(eventually(5, function() return not process_alive(agent_pid) end))
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
