-- What the real agent tells about its datapath on /metrics and in its log
-- (CONTRACTS.md, issue 8): real agent (--manifests), real kernel, real
-- clients in the test cgroup.
--  - balancing_translations_total{type,owner,result}: the datapath's
--    per-owner counters, summed over the CPUs and named by the Service,
--    whatever --events says (here --events off);
--  - a full map_redirect_loop is said, never silent: counted at each sync
--    and scrape, "map full" logged once, balancing_map_entries{map} against
--    balancing_map_max_entries{map}. Its pairs are written with bpftool here
--    (the agent has no writer of that map yet), into the agent's own pin dir.
local abi = require("balancing.abi")
local agent_run = require("helpers.agent_run")
local bpftool_write = require("helpers.bpftool_write")
local cjson = require("cjson")
local core_env = require("helpers.core_env")
local ffi = require("ffi")
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

-- One loop-avoidance pair (a pod cgroup ID, a LocalRedirect frontend) and its value.
local function loop_pair(cgroup_id)
  local key = ffi.new("struct redirect_loop_key")
  key.cgroup_id = cgroup_id
  key.frontend = abi.service_key("127.10.0.93", 53, "UDP", "localRedirect")
  return key, ffi.new("struct redirect_loop_value", { service_id = 7 })
end

describe("balancing-agent: its datapath on /metrics and in the log", function()
  local dir
  after_each(function()
    agent_run.teardown(dir)
    dir = nil
  end)

  -- The agent on a manifest directory holding manifest_text, its
  -- environment variables env_words; nil when the kernel specs cannot run.
  local function start_agent(manifest_text, env_words)
    local env = core_env.open(pending)
    if not env then
      return nil
    end
    dir = scratch.temp_dir()
    scratch.write_file(dir .. "/manifests/demo.yaml", manifest_text)
    return agent_run.start({ manifests = dir .. "/manifests", cgroup = env:cgroup(), bpffs = env:pin_dir(),
      log = dir .. "/agent.log", env = env_words })
  end

  it("counts real connects per Service: ok for the served one, 'no backend' for the one failing "
    .. "with EHOSTUNREACH, with --events off", function()
    local info = agent_run.spawn_json("python3 " .. FIXTURES .. "/servers.py tcp 127.0.0.1", "servers.py")
    local agent = start_agent(manifests(info.backends[1]:match(":(%d+)$")), "BALANCING_EVENTS=off")
    if not agent then
      return
    end

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

  it("reports a full map_redirect_loop in the log once and on /metrics as entries reaching max_entries", function()
    local agent = start_agent("", "BALANCING_MAX_REDIRECT_LOOP=2")
    if not agent then
      return
    end
    local labels = { map = "map_redirect_loop" }
    assert.equals(0, agent_run.metric_value(agent.port, "balancing_map_entries", labels))
    assert.equals(2, agent_run.metric_value(agent.port, "balancing_map_max_entries", labels))
    assert.same({}, agent_run.log_lines(agent.log, "map full"))

    for cgroup_id = 1, 2 do
      bpftool_write.update(agent.bpffs .. "/map_redirect_loop", loop_pair(cgroup_id))
    end

    assert.equals(2, agent_run.metric_value(agent.port, "balancing_map_entries", labels))
    agent_run.metric_value(agent.port, "balancing_map_entries", labels) -- a second scrape: no second line
    local full = agent_run.log_lines(agent.log, "map full")
    assert.equals(1, #full, agent:log_tail())
    assert.equals("map_redirect_loop", full[1].map)
    assert.equals(2, full[1].max_entries)
    assert.is_nil(agent_run.sanitizer_report(agent.log)) -- (an ASan build: BALANCING_SANITIZE=1)
  end)
end)
