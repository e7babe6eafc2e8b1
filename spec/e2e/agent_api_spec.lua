-- balancing-agent following the API server (issue 7): the real agent, the
-- fake API server (scripts/fake_apiserver.py, TLS with a test CA and a
-- bearer token, on 127.0.0.1), the real kernel and real clients in a test
-- cgroup. Objects created, changed and deleted are followed within a
-- second; faults (a dropped watch, 410 Gone, 500s, a stall, a malformed
-- object) recover with nothing stale; the identity annotations are written
-- once, by PATCH with a precondition, even when two agents race.
local abi = require("balancing.abi")
local apiserver = require("helpers.apiserver")
local agent_run = require("helpers.agent_run")
local core_env = require("helpers.core_env")
local metrics = require("balancing.metrics")
local scratch = require("helpers.scratch")
local system = require("system")

local FIXTURES = "spec/fixtures/kernel"
local VIP = "127.10.0.78"
local TOKEN = "spec-token-3f9a"
local eventually, http_get = agent_run.eventually, agent_run.http_get

local function node(name, annotations)
  return { apiVersion = "v1", kind = "Node", metadata = { name = name, annotations = annotations },
    status = { addresses = { { type = "InternalIP", address = "192.168.50." .. name:match("%d+$") } } } }
end

local function service(name, vip)
  return { apiVersion = "v1", kind = "Service", metadata = { name = name, namespace = "demo" },
    spec = { clusterIP = vip, ports = { { name = "http", port = 80 } } } }
end

local function slice(service_name, backend_port)
  return { apiVersion = "discovery.k8s.io/v1", kind = "EndpointSlice",
    metadata = { name = service_name .. "-1", namespace = "demo",
      labels = { ["kubernetes.io/service-name"] = service_name } },
    addressType = "IPv4", ports = { { name = "http", port = tonumber(backend_port) } },
    endpoints = { { addresses = { "127.0.0.1" } } } }
end

local function local_redirect(name)
  return { apiVersion = "balancing.elf.io/v1beta1", kind = "LocalRedirectPolicy", metadata = { name = name },
    spec = { frontend = { addressMatcher = { ip = "169.254.20.10", toPorts = { { port = "53", protocol = "UDP" } } } },
      backend = { endpointSelector = { matchLabels = { ["k8s-app"] = "node-local-dns" } },
        toPorts = { { port = "53", protocol = "UDP" } } } } }
end

local function connect_once(cgroup, vip)
  return agent_run.connect_once(cgroup, vip or VIP)
end

local metric_sum = agent_run.metric_value

-- The backend ports in the agent's pinned map_backend (read-only, in
-- process: polled without starting a client each time).
local function programmed_ports(bpffs)
  local maps = assert(require("balancing.core").open_maps(bpffs))
  local ports = {}
  for _, entry in ipairs(maps.map_backend:dump()) do
    ports[abi.ntohs(core_env.decode("struct backend_value", entry.value).port)] = true
  end
  for _, map in pairs(maps) do
    if type(map) == "userdata" then
      map:close()
    end
  end
  return ports
end

local function annotations_of(server, path)
  local code, _, obj = server:request("GET", path)
  assert.equals(200, code)
  return obj.metadata.annotations or {}
end

describe("balancing-agent following the API server", function()
  local env, dir, backends
  local logs = {} -- of the agents started, read for sanitizer reports at the end
  after_each(function()
    agent_run.cleanup()
    local reports = {}
    for _, log in ipairs(logs) do
      reports[#reports + 1] = agent_run.sanitizer_report(log)
    end
    logs = {}
    apiserver.stop_all()
    if dir then
      scratch.remove_dir(dir)
      dir = nil
    end
    core_env.close_all()
    -- (under BALANCING_SANITIZE=1 the agent is an ASan/UBSan build: nothing reported)
    assert(#reports == 0, table.concat(reports, "\n"))
  end)

  -- Two TCP backends; the fake API server (TLS, token) holding node-1 and
  -- the Service web on the first.
  local function cluster(options)
    options = options or {}
    env = core_env.open(pending)
    if not env then
      return nil
    end
    dir = scratch.temp_dir()
    backends = agent_run.spawn_json("python3 " .. FIXTURES .. "/servers.py tcp 127.0.0.1 127.0.0.1", "servers.py")
    backends.first_port = backends.backends[1]:match(":(%d+)$")
    backends.second_port = backends.backends[2]:match(":(%d+)$")
    local server = apiserver.start({ tls = true, token = TOKEN, no_crds = options.no_crds,
      bookmark_interval = options.bookmark_interval, history = options.history })
    server:seed({ node("node-1"), service("web", VIP), slice("web", backends.first_port) })
    return server
  end

  -- The agent as node (default node-1) on the server's kubeconfig, in a
  -- cgroup and pin directory of its own; waits for /readyz.
  local function start_agent(server, options)
    options = options or {}
    local node_name = options.node or "node-1"
    logs[#logs + 1] = dir .. "/" .. node_name .. ".log"
    return agent_run.start({ kubeconfig = not options.in_cluster and (options.kubeconfig or server:kubeconfig()),
      in_cluster = options.in_cluster, env = options.env, wrapper = options.wrapper, node_name = node_name,
      cgroup = options.cgroup or env:cgroup(), bpffs = options.bpffs or env:pin_dir(),
      log = dir .. "/" .. node_name .. ".log" })
  end

  local function log_lines(agent, msg)
    return agent_run.log_lines(agent.log, msg)
  end

  -- Seconds until check() holds (polled), or nil after limit.
  local function time_until(limit, check)
    local started = system.monotime()
    if eventually(limit, check) then
      return system.monotime() - started
    end
  end

  it("programs the cluster's Services and follows a change, a new Service and a deletion within a second",
    function()
      local server = cluster()
      if not server then
        return
      end
      local agent = start_agent(server)
      assert.equals(backends.backends[1], eventually(5, function() return connect_once(agent.cgroup) end))

      -- timed on the pinned maps (no client started per poll), then checked with a client
      local second = tonumber(backends.second_port)
      server:seed({ slice("web", backends.second_port) })
      local took = time_until(5, function() return programmed_ports(agent.bpffs)[second] end)
      assert.is_number(took, "the changed EndpointSlice was not followed")
      assert.is_true(took < 1, string.format("followed in %.2f s", took))
      assert.equals(backends.backends[2], connect_once(agent.cgroup))

      server:seed({ service("api", "127.10.0.79"), slice("api", 5353) })
      took = time_until(5, function() return programmed_ports(agent.bpffs)[5353] end)
      assert.is_number(took, "the new Service was not programmed")
      assert.is_true(took < 1, string.format("programmed in %.2f s", took))
      server:seed({ slice("api", backends.first_port) })
      assert.equals(backends.backends[1],
        eventually(5, function() return connect_once(agent.cgroup, "127.10.0.79") end))

      server:control("/_fake/objects", { items = { service("web", VIP) } }, "DELETE")
      took = time_until(5, function() return not programmed_ports(agent.bpffs)[second] end)
      assert.is_number(took, "the deleted Service's backend is still programmed")
      assert.is_true(took < 1, string.format("removed in %.2f s", took))
      assert.is_nil(connect_once(agent.cgroup))
      assert.equals(backends.backends[1], connect_once(agent.cgroup, "127.10.0.79"))

      -- and /metrics says so: each change's latency observed, the store's objects, the build
      local _, text = http_get(agent.port, "/metrics")
      local samples = assert(metrics.parse(text))
      assert.is_true(samples.balancing_sync_latency_seconds_count[1].value >= 4)
      assert.is_true(samples.balancing_reconcile_duration_seconds_count[1].value >= 4)
      assert.is_true(samples.balancing_map_writes_total[1].value >= 4)
      local services = agent_run.metric_value(agent.port, "balancing_objects", { kind = "Service" })
      assert.equals(1, services) -- api; web was deleted
      assert.equals(1, samples.balancing_build_info[1].value)
      assert.equals(6, #samples.balancing_watch_restarts_total) -- one series per kind
    end)

  it("lists in pages and watches with bookmarks, over TLS with the bearer token", function()
    local server = cluster()
    if not server then
      return
    end
    start_agent(server)
    local seen = {}
    for _, request in ipairs(server:requests()) do
      seen[#seen + 1] = request.path
    end
    local text = table.concat(seen, "\n")
    assert.matches("/api/v1/services?limit=500&labelSelector=", text, 1, true)
    assert.matches("/apis/discovery.k8s.io/v1/endpointslices?watch=1&allowWatchBookmarks=true", text, 1, true)
    -- this node's Running pods only: no BalancingPolicy sends to pods
    assert.matches("/api/v1/pods?limit=500&fieldSelector=spec.nodeName%3Dnode-1%2Cstatus.phase%3DRunning", text, 1,
      true)
    assert.matches("/api/v1/nodes%?watch=1&allowWatchBookmarks=true&timeoutSeconds=%d+&resourceVersion=%d+", text)
  end)

  it("reads a list of many pages: every object once, the continue tokens followed", function()
    local server = cluster()
    if not server then
      return
    end
    local objects = {}
    for i = 1, 7 do
      objects[#objects + 1] = service("extra-" .. i, "127.10.1." .. i)
    end
    server:seed(objects)
    local agent = start_agent(server, { env = "BALANCING_LIST_PAGE_SIZE=2" })
    local pages = 0
    for _, request in ipairs(server:requests()) do
      if request.path:find("/api/v1/services?limit=2&continue=", 1, true) then
        pages = pages + 1
      end
    end
    assert.equals(3, pages) -- 8 Services in pages of 2: the first page, then 3 continued
    assert.same({ { labels = { kind = "Service" }, value = 8 } },
      agent_run.metric_samples(agent.port, "balancing_objects", { kind = "Service" }))
  end)

  -- Standard base64 of a file's bytes (for the kubeconfig's *-data fields).
  local function base64_of(path)
    local _, out = scratch.run("base64 -w0 " .. scratch.quote(path))
    return out
  end

  it("authenticates with a client certificate given as kubeconfig data (CA, certificate, key), no token",
    function()
      env = core_env.open(pending)
      if not env then
        return
      end
      dir = scratch.temp_dir()
      backends = agent_run.spawn_json("python3 " .. FIXTURES .. "/servers.py tcp 127.0.0.1 127.0.0.1", "servers.py")
      local server = apiserver.start({ tls = true, token = TOKEN, client_cert = true })
      server:seed({ node("node-1"), service("web", VIP), slice("web", backends.backends[1]:match(":(%d+)$")) })
      local kubeconfig = dir .. "/kubeconfig-data"
      scratch.write_file(kubeconfig, table.concat({
        "apiVersion: v1", "kind: Config", "current-context: spec",
        "clusters: [{name: fake, cluster: {server: '" .. server.url .. "', certificate-authority-data: "
          .. base64_of(server.ca_file) .. "}}]",
        "users: [{name: spec, user: {client-certificate-data: " .. base64_of(server.client_cert)
          .. ", client-key-data: " .. base64_of(server.client_key) .. "}}]",
        "contexts: [{name: spec, context: {cluster: fake, user: spec}}]", "" }, "\n"))
      local agent = start_agent(server, { kubeconfig = kubeconfig })
      assert.equals(backends.backends[1], eventually(5, function() return connect_once(agent.cgroup) end))
    end)

  it("verifies the server's certificate: another CA is never ready, and says why", function()
    local server = cluster()
    if not server then
      return
    end
    local kubeconfig = dir .. "/kubeconfig-other-ca"
    scratch.write_file(kubeconfig, (apiserver.read_file(server:kubeconfig()):gsub("certificate%-authority: [^\n]+",
      "certificate-authority: /etc/ssl/certs/ca-certificates.crt")))
    local port, log = core_env.free_port(), dir .. "/other-ca.log"
    local launch = assert(io.popen(string.format("env -u LD_PRELOAD %s --kubeconfig %s --cgroup %s --bpffs %s "
      .. "--listen 127.0.0.1:%d --node-name node-1 --run-dir %s >>%s 2>&1 & echo $!", agent_run.AGENT,
      scratch.quote(kubeconfig), scratch.quote(env:cgroup()), scratch.quote(env:pin_dir()), port,
      scratch.quote(agent_run.run_dir_of(log)), scratch.quote(log))))
    local pid = tonumber(launch:read("*l"))
    launch:close()
    agent_run.track(pid, "balancing-agent")
    local refused = eventually(20, function()
      for _, line in ipairs(agent_run.log_lines(log, "API request failed: retrying")) do
        if tostring(line.error):find("certificate", 1, true) then
          return line
        end
      end
    end)
    assert.is_table(refused, "no certificate error logged: " .. (apiserver.read_file(log) or ""))
    -- (one answer, waited for: a loaded machine under ASan can miss one request's 2 s)
    assert.equals(503, eventually(10, function() return http_get(port, "/readyz") end))
    for _, request in ipairs(server:requests()) do
      error("a request reached the server through an unverified connection: " .. request.path)
    end
  end)

  it("in a pod: the service account's token and CA, and a rotated token read again", function()
    local server = cluster()
    if not server then
      return
    end
    -- the pod's view, in a mount namespace of the agent's own: a tmpfs on
    -- /run holding the service account's files (the host's /run is untouched)
    local secrets = "/run/secrets/kubernetes.io/serviceaccount"
    local setup = table.concat({
      "mount -t tmpfs balancing-spec /run",
      "mkdir -p " .. secrets,
      "cp " .. scratch.quote(server.ca_file) .. " " .. secrets .. "/ca.crt",
      "printf %s " .. TOKEN .. " > " .. secrets .. "/token",
      'exec "$@"' }, " && ")
    local agent = start_agent(server, { in_cluster = true,
      env = "KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=" .. server.port,
      wrapper = "unshare --mount --propagation private sh -c " .. scratch.quote(setup) .. " sh" })
    assert.equals(backends.backends[1], eventually(5, function() return connect_once(agent.cgroup) end))

    -- the kubelet rotates the token: the server accepts only the new one, the
    -- watches are cut, and the agent reconnects with the file's new token
    scratch.write_file("/proc/" .. agent.pid .. "/root" .. secrets .. "/token", "rotated-token-77c1")
    server:control("/_fake/auth", { tokens = { "rotated-token-77c1" } })
    server:control("/_fake/faults", { dropWatches = true })
    server:seed({ slice("web", backends.second_port) })
    assert.is_true(eventually(30, function() return connect_once(agent.cgroup) == backends.backends[2] end),
      "not followed after the rotation: " .. (apiserver.read_file(agent.log) or ""))
    local log = apiserver.read_file(agent.log)
    assert.is_nil(log:find(TOKEN, 1, true), "a token in the log")
    assert.is_nil(log:find("rotated-token-77c1", 1, true), "a token in the log")
  end)

  it("follows every node's pods only while a BalancingPolicy sends to pods", function()
    local server = cluster()
    if not server then
      return
    end
    local remote_pod = { apiVersion = "v1", kind = "Pod",
      metadata = { name = "remote", namespace = "demo", uid = "remote-uid", labels = { app = "remote" } },
      spec = { nodeName = "node-2", containers = { { name = "c", image = "i" } } },
      status = { phase = "Running", podIP = "127.0.0.1", conditions = { { type = "Ready", status = "True" } } } }
    local policy = { apiVersion = "balancing.elf.io/v1beta1", kind = "BalancingPolicy",
      metadata = { name = "to-remote", annotations = { ["balancing.elf.io/serviceId"] = "70" } },
      spec = { frontend = { addressMatcher = { ip = "127.10.0.90", toPorts = { { port = "80", protocol = "TCP" } } } },
        backend = { serviceEndpoint = { endpointSelector = { matchLabels = { app = "remote" } },
          toPorts = { { port = backends.second_port, protocol = "TCP" } }, redirectMode = "podEndpoint" } } } }
    server:seed({ node("node-2"), remote_pod })
    local agent = start_agent(server)
    local function pods_held()
      return agent_run.metric_value(agent.port, "balancing_objects", { kind = "Pod" })
    end
    assert.equals(0, pods_held()) -- node-2's pod is not this node's
    assert.is_nil(connect_once(agent.cgroup, "127.10.0.90"))

    server:seed({ policy })
    assert.equals(backends.backends[2], eventually(10, function() return connect_once(agent.cgroup, "127.10.0.90") end),
      "the policy's pod on node-2 is not a backend: " .. (apiserver.read_file(agent.log) or ""))
    assert.equals(1, pods_held())
    assert.equals(1, #log_lines(agent, "following pods"))

    server:control("/_fake/objects", { items = { policy } }, "DELETE")
    assert.truthy(eventually(10, function() return pods_held() == 0 end), "node-2's pod is still held")
    assert.is_nil(connect_once(agent.cgroup, "127.10.0.90"))
  end)

  it("writes its node's nodeId and nodeProxyIpv4, and a policy's serviceId, by merge patch", function()
    local server = cluster()
    if not server then
      return
    end
    server:seed({ local_redirect("node-local-dns") })
    start_agent(server)
    local node_annotations = eventually(5, function()
      local annotations = annotations_of(server, "/api/v1/nodes/node-1")
      return annotations["balancing.elf.io/nodeId"] and annotations
    end)
    assert.is_table(node_annotations, "no nodeId written")
    assert.is_true(tonumber(node_annotations["balancing.elf.io/nodeId"]) > 0)
    assert.equals("192.168.50.1", node_annotations["balancing.elf.io/nodeProxyIpv4"])
    local policy_path = "/apis/balancing.elf.io/v1beta1/localredirectpolicies/node-local-dns"
    local service_id = eventually(5, function()
      return annotations_of(server, policy_path)["balancing.elf.io/serviceId"]
    end)
    assert.matches("^%d+$", service_id)
  end)

  it("two agents on two nodes get distinct node IDs, and one policy gets one serviceId", function()
    local server = cluster()
    if not server then
      return
    end
    server:seed({ node("node-2"), local_redirect("node-local-dns") })
    local first = start_agent(server, { node = "node-1" })
    local second = start_agent(server, { node = "node-2" })
    local ids = eventually(10, function()
      local a = annotations_of(server, "/api/v1/nodes/node-1")["balancing.elf.io/nodeId"]
      local b = annotations_of(server, "/api/v1/nodes/node-2")["balancing.elf.io/nodeId"]
      return a and b and { a, b }
    end)
    assert.is_table(ids, "both nodes should have an ID")
    assert.are_not.equal(ids[1], ids[2])
    local policy_path = "/apis/balancing.elf.io/v1beta1/localredirectpolicies/node-local-dns"
    assert.truthy(eventually(5, function()
      return annotations_of(server, policy_path)["balancing.elf.io/serviceId"]
    end))
    -- the serviceId was written once: one PATCH succeeded; the other agent
    -- either found it written or lost the precondition (409)
    local written = 0
    for _, agent in ipairs({ first, second }) do
      for _, line in ipairs(log_lines(agent, "annotated")) do
        if line.kind == "LocalRedirectPolicy" then
          written = written + 1
        end
      end
    end
    assert.equals(1, written)
  end)

  it("a custom resource whose CRD is not installed: one log line, and the rest works", function()
    local server = cluster({ no_crds = true })
    if not server then
      return
    end
    local agent = start_agent(server)
    assert.equals(backends.backends[1], eventually(5, function() return connect_once(agent.cgroup) end))
    local lines = log_lines(agent, "not served (is its CRD installed?): retried")
    assert.equals(2, #lines) -- one per kind, however often it is retried
  end)

  describe("recovers from faults with nothing stale", function()
    -- A change made during the fault, seen once it is over: the Service
    -- moved to the second backend, and a Service deleted meanwhile gone.
    local function change_during(server, agent, fault, release)
      server:seed({ service("old", "127.10.0.80"), slice("old", backends.first_port) })
      assert.equals(backends.backends[1],
        eventually(5, function() return connect_once(agent.cgroup, "127.10.0.80") end))
      fault()
      server:seed({ slice("web", backends.second_port) })
      server:control("/_fake/objects", { items = { service("old", "127.10.0.80") } }, "DELETE")
      if release then
        release()
      end
      if not eventually(30, function() return connect_once(agent.cgroup) == backends.backends[2] end) then
        local _, state = server:request("GET", "/_fake/state")
        local _, sockets = scratch.run("ss -tnpi")
        error("the change made during the fault was not followed (the agent is "
          .. (agent_run.alive(agent.pid, "balancing-agent") and "alive" or "gone") .. "): "
          .. (apiserver.read_file(agent.log) or "")
          .. "\nserver state: " .. tostring(state) .. "\nsockets:\n" .. sockets)
      end
      assert.is_true(eventually(30, function() return connect_once(agent.cgroup, "127.10.0.80") == nil end),
        "the Service deleted during the fault still translates")
      assert.is_true(agent_run.alive(agent.pid, "balancing-agent"), "the agent is gone")
    end

    it("a dropped watch", function()
      local server = cluster()
      if not server then
        return
      end
      local agent = start_agent(server)
      change_during(server, agent, function() server:control("/_fake/faults", { dropWatches = true }) end)
      assert.truthy(eventually(5, function()
        return (metric_sum(agent.port, "balancing_watch_restarts_total") or 0) >= 1
      end))
    end)

    it("410 Gone: the history compacted while the watch was down", function()
      local server = cluster()
      if not server then
        return
      end
      local agent = start_agent(server)
      change_during(server, agent, function()
        server:control("/_fake/faults", { failRequests = 1000, failCode = 503 })
        server:control("/_fake/faults", { dropWatches = true })
      end, function()
        server:control("/_fake/compact")
        server:control("/_fake/faults", { clear = true })
      end)
      assert.truthy(#agent_run.log_lines(agent.log, "listing again") >= 1)
    end)

    it("500s on every request for a while", function()
      local server = cluster()
      if not server then
        return
      end
      local agent = start_agent(server)
      change_during(server, agent, function()
        server:control("/_fake/faults", { failRequests = 20, failCode = 500 })
        server:control("/_fake/faults", { dropWatches = true })
      end)
    end)

    it("a watch refused again and again (503 with a Status) is retried less and less often", function()
      local server = cluster()
      if not server then
        return
      end
      local agent = start_agent(server)
      server:control("/_fake/faults", { failRequests = 100000, failCode = 503, failPath = "/api/v1/nodes" })
      server:control("/_fake/faults", { dropWatches = true })
      local started = system.monotime()
      -- over 6 s a doubling backoff from 0.25 s allows about 5 tries (each wait ±50 %)
      eventually(6, function() return false end)
      local tries = 0
      for _, line in ipairs(log_lines(agent, "API request failed: retrying")) do
        if line.kind == "Node" and line.status == "503" then
          tries = tries + 1
        end
      end
      assert.is_true(tries >= 2 and tries <= 8, string.format("%d tries in %.1f s", tries, system.monotime() - started))
      -- and once the server answers again, the Node watch is back: a change reaches the agent
      local function node_events()
        return agent_run.metric_value(agent.port, "balancing_watch_events_total", { kind = "Node" }) or 0
      end
      local before = node_events()
      server:control("/_fake/faults", { clear = true })
      server:seed({ node("node-1", { ["example.com/touched"] = "yes" }) })
      assert.truthy(eventually(40, function() return node_events() > before end), "the Node watch did not come back")
    end)

    it("a stalled watch (no byte, no bookmark) is given up and started again", function()
      local server = cluster({ bookmark_interval = 0.5 })
      if not server then
        return
      end
      local agent = start_agent(server, { env = "BALANCING_WATCH_STALL_SECONDS=2" })
      change_during(server, agent, function()
        server:control("/_fake/faults", { stallWatches = true })
      end, function()
        -- stalled long enough for the agent to give up at least once
        eventually(10, function()
          return (metric_sum(agent.port, "balancing_watch_restarts_total") or 0) >= 1
        end)
        server:control("/_fake/faults", { stallWatches = false })
      end)
      local stalled = 0
      for _, line in ipairs(log_lines(agent, "API request failed: retrying")) do
        if tostring(line.error):find("stalled: no byte for 2 s", 1, true) then
          stalled = stalled + 1
        end
      end
      assert.is_true(stalled >= 1, "no watch was given up as stalled")
    end)

    it("a malformed object: one log line naming it, and nothing else changes", function()
      local server = cluster()
      if not server then
        return
      end
      local agent = start_agent(server)
      assert.equals(backends.backends[1], eventually(5, function() return connect_once(agent.cgroup) end))
      server:control("/_fake/faults", { malformed = { resource = "services", ["in"] = "watch" } })
      assert.truthy(eventually(5, function() return #log_lines(agent, "watch event refused") == 1 end))
      server:seed({ slice("web", backends.second_port) })
      assert.is_true(eventually(5, function() return connect_once(agent.cgroup) == backends.backends[2] end))
      assert.equals(1, #log_lines(agent, "watch event refused"))
    end)
  end)

  it("a restarted agent removes what was deleted while it was down, and keeps serving meanwhile", function()
    local server = cluster()
    if not server then
      return
    end
    server:seed({ service("old", "127.10.0.80"), slice("old", backends.first_port) })
    local agent = start_agent(server)
    assert.equals(backends.backends[1], eventually(5, function() return connect_once(agent.cgroup, "127.10.0.80") end))
    assert.is_true(agent_run.stop_process(agent.pid, "balancing-agent", "KILL", 10))
    server:control("/_fake/objects", { items = { service("old", "127.10.0.80") } }, "DELETE")
    -- down: the pinned datapath still serves what it had
    assert.equals(backends.backends[1], connect_once(agent.cgroup))
    local restarted = start_agent(server, { cgroup = agent.cgroup, bpffs = agent.bpffs })
    assert.is_nil(connect_once(restarted.cgroup, "127.10.0.80"))
    assert.equals(backends.backends[1], connect_once(restarted.cgroup))
  end)

  it("a kubeconfig it cannot use: one line on stderr naming the file, exit 2, nothing attached", function()
    env = core_env.open(pending)
    if not env then
      return
    end
    dir = scratch.temp_dir()
    scratch.write_file(dir .. "/kubeconfig", "apiVersion: v1\nkind: Config\n")
    local cgroup, bpffs = env:cgroup(), env:pin_dir()
    local status, stdout, stderr = scratch.run(string.format("%s --node-name node-1 --kubeconfig %s --cgroup %s "
      .. "--bpffs %s --listen 127.0.0.1:%d --run-dir %s", agent_run.AGENT, scratch.quote(dir .. "/kubeconfig"),
      scratch.quote(cgroup), scratch.quote(bpffs), core_env.free_port(), scratch.quote(dir .. "/run")))
    assert.equals(2, status, stdout .. stderr)
    assert.matches("kubeconfig " .. dir .. "/kubeconfig: current-context is not set", stderr, 1, true)
    local _, attached = core_env.cgroup_programs(cgroup)
    assert.equals(0, attached)
    assert.is_nil(io.open(bpffs))
  end)
end)
