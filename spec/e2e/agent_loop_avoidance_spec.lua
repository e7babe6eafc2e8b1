-- LocalRedirect loop avoidance with the real agent (issue 8): the policy's
-- own backend pods reach the Service they are redirected from, everything
-- else on the node is redirected. The pods are cgroup directories the spec
-- makes under its own test cgroup (the agent's --cgroup) in both of
-- kubelet's layouts, with Pod objects of the same UIDs in the agent's
-- manifest directory; the clients are real processes inside them.
--   - a hostNetwork backend pod (systemd layout, the host's netns) is not
--     redirected, nor one in a network namespace of its own (cgroupfs);
--   - an ordinary pod and a host process are;
--   - a container started in a backend pod later, and a backend pod whose
--     cgroup appears after its Pod object, are exempt within seconds;
--   - a restarted agent takes its pairs over without rewriting them;
--   - a pod that stops being a backend loses its pairs (the map is pruned).
local agent_run = require("helpers.agent_run")
local cjson = require("cjson")
local core_env = require("helpers.core_env")
local lfs = require("lfs")
local scratch = require("helpers.scratch")

local eventually = agent_run.eventually
local FIXTURES = "spec/fixtures/kernel"
local VIP = "127.10.0.53"
-- a container's cgroup name: 64 hex digits, as the runtimes name them
local CONTAINER = string.rep("c0ffee", 10) .. "c0de"
local LATER_CONTAINER = string.rep("beef", 16)

local UID = {
  host_network = "3f9a2c10-0000-4000-8000-000000000001", -- backend, hostNetwork, systemd layout
  own_netns = "3f9a2c10-0000-4000-8000-000000000002",    -- backend, its own netns, cgroupfs layout
  ordinary = "3f9a2c10-0000-4000-8000-000000000003",     -- not a backend, cgroupfs layout
  late = "3f9a2c10-0000-4000-8000-000000000004",         -- backend whose cgroup comes later
}

local function pod_yaml(name, uid, opts)
  return table.concat({
    "apiVersion: v1", "kind: Pod",
    "metadata: {name: " .. name .. ", namespace: kube-system, uid: " .. uid .. ", labels: {k8s-app: "
      .. opts.app .. "}}",
    "spec: {nodeName: node-1, hostNetwork: " .. tostring(opts.host_network or false)
      .. ", containers: [{name: c, image: i}]}",
    "status: {phase: Running, podIP: 127.0.0.2, conditions: [{type: Ready, status: \"True\"}]}",
    "---", "" }, "\n")
end

-- kube-dns on VIP:80 (its endpoint 127.0.0.1:service_port) and the
-- node-local-dns policy redirecting it to the local pods at redirect_port.
local function dns_yaml(service_port, redirect_port)
  return table.concat({
    "apiVersion: v1", "kind: Service",
    "metadata: {name: kube-dns, namespace: kube-system, uid: kube-dns-uid}",
    "spec: {clusterIP: " .. VIP .. ", ports: [{name: dns-tcp, port: 80, protocol: TCP}]}",
    "---",
    "apiVersion: discovery.k8s.io/v1", "kind: EndpointSlice",
    "metadata: {name: kube-dns-1, namespace: kube-system, labels: {kubernetes.io/service-name: kube-dns}}",
    "addressType: IPv4",
    "ports: [{name: dns-tcp, port: " .. service_port .. ", protocol: TCP}]",
    "endpoints: [{addresses: [127.0.0.1]}]",
    "---",
    "apiVersion: balancing.elf.io/v1beta1", "kind: LocalRedirectPolicy",
    "metadata: {name: node-local-dns, annotations: {balancing.elf.io/serviceId: \"20\"}}",
    "spec:",
    "  frontend: {serviceMatcher: {namespace: kube-system, serviceName: kube-dns,"
      .. " toPorts: [{port: \"80\", protocol: TCP, name: dns-tcp}]}}",
    "  backend: {endpointSelector: {matchLabels: {k8s-app: node-local-dns}},"
      .. " toPorts: [{port: \"" .. redirect_port .. "\", protocol: TCP, name: dns-tcp}]}",
    "" }, "\n")
end

describe("balancing-agent: LocalRedirect loop avoidance by pod cgroup", function()
  local dir, cgroups, netns
  after_each(function()
    agent_run.cleanup() -- the agent and the servers, by pid
    for i = #(cgroups or {}), 1, -1 do -- the deepest first; the clients have exited
      lfs.rmdir(cgroups[i])
    end
    cgroups = nil
    if netns then
      os.execute("ip netns del " .. scratch.quote(netns) .. " 2>/dev/null")
      netns = nil
    end
    if dir then
      scratch.remove_dir(dir)
      dir = nil
    end
    core_env.close_all() -- the test cgroup, once empty
  end)

  -- mkdir -p of relative under root, each directory made remembered for removal.
  local function make_cgroup(root, relative)
    local path = root
    for part in relative:gmatch("[^/]+") do
      path = path .. "/" .. part
      if not lfs.attributes(path, "mode") then
        assert(lfs.mkdir(path))
        cgroups[#cgroups + 1] = path
      end
    end
    return path
  end

  -- The backend one connection from a new process in cgroup (and in netns
  -- when given) reached to VIP:80, or nil.
  local function reached(cgroup, in_netns)
    local prefix = in_netns and ("ip netns exec " .. scratch.quote(in_netns) .. " ") or ""
    local output = core_env.run_in_cgroup(cgroup,
      string.format("exec %spython3 %s/client.py tcp %s 80 1", prefix, FIXTURES, VIP))
    local ok, run = pcall(cjson.decode, output)
    return ok and type(run) == "table" and run.results and run.results[1] and run.results[1].backend or nil
  end

  local function loop_entries(agent)
    return agent_run.metric_value(agent.port, "balancing_map_entries", { map = "map_redirect_loop" })
  end

  -- The agent on the test cgroup with the pods' cgroups in both layouts;
  -- servers answering with their identity: 127.0.0.1 (the Service's
  -- endpoint) and 127.0.0.2 (the node-local pods), the same in the host's
  -- netns and in the spec's own.
  local function start()
    local env = core_env.open(pending)
    if not env then
      return nil
    end
    dir, cgroups = scratch.temp_dir(), {}
    local root = env:cgroup()
    local t = {
      root = root,
      host_network = make_cgroup(root, "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
        .. UID.host_network:gsub("-", "_") .. ".slice/cri-containerd-" .. CONTAINER .. ".scope"),
      own_netns = make_cgroup(root, "kubepods/besteffort/pod" .. UID.own_netns .. "/" .. CONTAINER),
      ordinary = make_cgroup(root, "kubepods/burstable/pod" .. UID.ordinary .. "/" .. CONTAINER),
    }
    local servers = agent_run.spawn_json("python3 " .. FIXTURES .. "/servers.py tcp 127.0.0.1 127.0.0.2", "servers.py")
    t.service, t.redirect = servers.backends[1], servers.backends[2]
    netns = string.format("balancing-loop-%d-%d", os.time(), math.random(1e6))
    assert(os.execute("ip netns add " .. scratch.quote(netns) .. " && ip -n " .. scratch.quote(netns)
      .. " link set lo up") == 0, "ip netns add " .. netns)
    agent_run.spawn_json(string.format("ip netns exec %s python3 %s/servers.py tcp %s %s", scratch.quote(netns),
      FIXTURES, t.service, t.redirect), "servers.py")
    t.pods = {
      pod_yaml("node-local-dns-host", UID.host_network, { app = "node-local-dns", host_network = true }),
      pod_yaml("node-local-dns-netns", UID.own_netns, { app = "node-local-dns" }),
      pod_yaml("web", UID.ordinary, { app = "web" }),
      pod_yaml("node-local-dns-late", UID.late, { app = "node-local-dns", host_network = true }),
    }
    scratch.write_file(dir .. "/manifests/dns.yaml", dns_yaml(t.service:match(":(%d+)$"), t.redirect:match(":(%d+)$")))
    scratch.write_file(dir .. "/manifests/pods.yaml", table.concat(t.pods))
    t.agent = agent_run.start({ manifests = dir .. "/manifests", cgroup = root, bpffs = env:pin_dir(),
      log = dir .. "/agent.log" })
    return t
  end

  it("does not redirect the policy's own backend pods, hostNetwork or in a netns of their own; "
    .. "redirects an ordinary pod and a host process", function()
    local t = start()
    if not t then
      return
    end
    -- the policy is programmed: a host process is redirected to the node-local pod
    assert.equals(t.redirect, eventually(5, function() return reached(t.root) end), t.agent:log_tail())
    assert.equals(t.service, reached(t.host_network), "the hostNetwork backend pod reaches the Service")
    assert.equals(t.service, reached(t.own_netns, netns), "the backend pod in its own netns reaches the Service")
    assert.equals(t.redirect, reached(t.ordinary), "an ordinary pod is redirected")
    assert.equals(t.redirect, reached(t.root), "a host process is redirected")
    -- one pair per found backend pod and frontend (the late pod has no cgroup yet)
    assert.equals(2, loop_entries(t.agent))
    assert.is_nil(agent_run.sanitizer_report(t.agent.log)) -- (an ASan build: BALANCING_SANITIZE=1)
  end)

  it("exempts a container started in a backend pod later, and a backend pod whose cgroup appears later, "
    .. "within seconds", function()
    local t = start()
    if not t then
      return
    end
    assert.equals(t.redirect, eventually(5, function() return reached(t.root) end), t.agent:log_tail())
    -- a new container of the hostNetwork backend pod: covered by the pod's pair
    local pod = t.host_network:match("^(.*)/[^/]+$")
    local later = make_cgroup(pod, "cri-containerd-" .. LATER_CONTAINER .. ".scope")
    assert.equals(t.service, eventually(5, function()
      local backend = reached(later)
      return backend == t.service and backend
    end), "a container started later in the backend pod reaches the Service")
    -- the kubelet makes the late pod's cgroup (cgroupfs, Guaranteed: no QoS level) after the agent runs
    local late = make_cgroup(t.root, "kubepods/pod" .. UID.late .. "/" .. CONTAINER)
    local started = os.time()
    assert.equals(t.service, eventually(10, function()
      local backend = reached(late)
      return backend == t.service and backend
    end), "a backend pod whose cgroup appeared later reaches the Service")
    assert.is_true(os.time() - started <= 5, "exempt within a few seconds")
    assert.equals(3, loop_entries(t.agent))
  end)

  it("restarted (kill -9), takes its pairs over: nothing rewritten, the backend pods still exempt", function()
    local t = start()
    if not t then
      return
    end
    assert.equals(t.service, eventually(5, function() return reached(t.host_network) end), t.agent:log_tail())
    assert.equals(2, loop_entries(t.agent))
    t.agent:kill("KILL")
    local agent = agent_run.start({ manifests = dir .. "/manifests", cgroup = t.root, bpffs = t.agent.bpffs,
      log = dir .. "/agent.log" })
    assert.equals(0, agent:metric("balancing_map_writes_total"), agent:log_tail())
    assert.equals(2, loop_entries(agent))
    assert.equals(t.service, reached(t.host_network))
    assert.equals(t.service, reached(t.own_netns, netns))
    assert.equals(t.redirect, reached(t.ordinary))
  end)

  it("prunes the pairs of a pod that is no longer a backend: it is redirected again", function()
    local t = start()
    if not t then
      return
    end
    assert.equals(t.service, eventually(5, function() return reached(t.host_network) end), t.agent:log_tail())
    assert.equals(2, loop_entries(t.agent))
    -- the hostNetwork pod is gone from the cluster
    scratch.write_file(dir .. "/manifests/pods.yaml.tmp", t.pods[2] .. t.pods[3] .. t.pods[4])
    os.rename(dir .. "/manifests/pods.yaml.tmp", dir .. "/manifests/pods.yaml")
    assert.is_true(eventually(5, function() return loop_entries(t.agent) == 1 end), t.agent:log_tail())
    assert.equals(t.redirect, reached(t.host_network), "no longer exempt")
    assert.equals(t.service, reached(t.own_netns, netns), "the other backend pod still is")
  end)
end)
