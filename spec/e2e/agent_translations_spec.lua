-- balancing_translations_total{type,owner,result} on the real agent's
-- /metrics (CONTRACTS.md): the datapath's per-owner counters, summed over the
-- CPUs and named by the Service, whatever --events says. Real agent
-- (--manifests, --events off), real clients in the test cgroup.
local agent_run = require("helpers.agent_run")
local cjson = require("cjson")
local core_env = require("helpers.core_env")
local scratch = require("helpers.scratch")

local FIXTURES = "spec/fixtures/kernel"
local SERVED_VIP, EMPTY_VIP = "127.10.0.91", "127.10.0.92"
local EHOSTUNREACH = 113

-- demo/web on SERVED_VIP with one endpoint (127.0.0.1:backend_port), and
-- demo/empty on EMPTY_VIP with no EndpointSlice at all (no backend).
local function manifests(backend_port)
  return table.concat({
    "apiVersion: v1", "kind: Service",
    "metadata: {name: web, namespace: demo, uid: web-uid}",
    "spec: {clusterIP: " .. SERVED_VIP .. ", ports: [{name: http, port: 80}]}",
    "---",
    "apiVersion: discovery.k8s.io/v1", "kind: EndpointSlice",
    "metadata: {name: web-1, namespace: demo, labels: {kubernetes.io/service-name: web}}",
    "addressType: IPv4",
    "ports: [{name: http, port: " .. backend_port .. "}]",
    "endpoints: [{addresses: [127.0.0.1]}]",
    "---",
    "apiVersion: v1", "kind: Service",
    "metadata: {name: empty, namespace: demo, uid: empty-uid}",
    "spec: {clusterIP: " .. EMPTY_VIP .. ", ports: [{name: http, port: 80}]}", "" }, "\n")
end

-- count connects from inside the cgroup to vip:80: their results.
local function connects(cgroup, vip, count)
  local output = core_env.run_in_cgroup(cgroup,
    string.format("exec python3 %s/client.py tcp %s 80 %d", FIXTURES, vip, count))
  local ok, run = pcall(cjson.decode, output)
  assert(ok and type(run) == "table", "client failed: " .. output)
  return run.results
end

describe("balancing-agent /metrics: translations per owner", function()
  local dir
  after_each(function()
    agent_run.cleanup()
    if dir then
      scratch.remove_dir(dir)
      dir = nil
    end
    core_env.close_all()
  end)

  it("counts real connects per Service: ok for the served one, 'no backend' for the one failing "
    .. "with EHOSTUNREACH, with --events off", function()
    local env = core_env.open(pending)
    if not env then
      return
    end
    dir = scratch.temp_dir()
    local info = agent_run.spawn_json("python3 " .. FIXTURES .. "/servers.py tcp 127.0.0.1", "servers.py")
    scratch.write_file(dir .. "/manifests/demo.yaml", manifests(info.backends[1]:match(":(%d+)$")))
    local agent = agent_run.start({ manifests = dir .. "/manifests", cgroup = env:cgroup(), bpffs = env:pin_dir(),
      log = dir .. "/agent.log", env = "BALANCING_EVENTS=off" })

    for _, result in ipairs(connects(agent.cgroup, SERVED_VIP, 5)) do
      assert.equals(info.backends[1], result.backend)
    end
    for _, result in ipairs(connects(agent.cgroup, EMPTY_VIP, 3)) do
      assert.equals(EHOSTUNREACH, result.errno)
    end

    local name = "balancing_translations_total"
    local ok = { type = "service", owner = "demo/web", result = "ok" }
    local failed = { type = "service", owner = "demo/empty", result = "no backend" }
    local counted = agent_run.eventually(5, function()
      return agent_run.metric_value(agent.port, name, ok) == 5 and agent_run.metric_value(agent.port, name, failed) == 3
    end)
    assert.is_true(counted == true, "/metrics: " .. cjson.encode(agent_run.metric_samples(agent.port, name) or {}))
    assert.same({}, agent_run.metric_samples(agent.port, name, { owner = "demo/web", result = "no backend" }))
    assert.equals(0, agent:metric("balancing_events_total"), "--events off: no event was logged")
    assert.is_nil(agent_run.sanitizer_report(agent.log)) -- (an ASan build: BALANCING_SANITIZE=1)
  end)
end)
