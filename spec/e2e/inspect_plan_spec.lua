-- `inspect --json showMapData all` against `balancing-agent plan --json` with
-- the real agent running (issue 9, "inspect"): the agent, standalone on a
-- scratch copy of examples/cluster/manifests as node-1, programs real pinned
-- maps; what inspect reads back from them is the frontend view plan computes
-- for the same objects — frontends keyed by address, port, protocol, type,
-- each with its mode, id, affinitySeconds, localOnly and backends (a set,
-- with `local`), and its owner wherever inspect names one. After a manifest
-- changes and the agent follows, they still agree.
local agent_run = require("helpers.agent_run")
local core_env = require("helpers.core_env")
local frontend_view = require("helpers.frontend_view")
local scratch = require("helpers.scratch")

local NODE = "node-1"
local READY_SECONDS = 30 -- the agent's first sync, under ASan on a loaded machine
local FOLLOW_SECONDS = 20 -- a manifest change reaching the maps, likewise

-- The node-2 endpoint of the web Service's first slice, as the example has it.
local WEB_NODE2_ENDPOINT = table.concat({
  "  - addresses: [10.244.2.20]",
  "    conditions: {ready: true, serving: true, terminating: false}",
  "    nodeName: node-2",
  "    targetRef: {kind: Pod, namespace: default, name: web-6f7d9-2}", "" }, "\n")

-- A Service the example does not have: ClusterIP, two ports, one local and
-- one remote endpoint.
local EXTRA_SERVICE = [[
apiVersion: v1
kind: Service
metadata: {name: extra, namespace: spec, uid: 5e0c0000-0000-4000-8000-00000000e001}
spec:
  clusterIP: 10.96.200.1
  ports:
    - {name: http, port: 8081, protocol: TCP, targetPort: 9090}
    - {name: dns, port: 5353, protocol: UDP, targetPort: 9053}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: extra-1, namespace: spec, labels: {kubernetes.io/service-name: extra}}
addressType: IPv4
ports: [{name: http, port: 9090, protocol: TCP}, {name: dns, port: 9053, protocol: UDP}]
endpoints:
  - {addresses: [10.244.1.77], conditions: {ready: true}, nodeName: node-1}
  - {addresses: [10.244.2.77], conditions: {ready: true}, nodeName: node-2}
]]

-- Replaces a file the way an editor does (write aside, rename over).
local function replace_file(path, text)
  scratch.write_file(path .. ".tmp", text)
  assert(os.rename(path .. ".tmp", path))
end

describe("inspect --json showMapData all with the agent running", function()
  local dir
  after_each(function()
    agent_run.teardown(dir) -- the agent by pid, the scratch directory, pins and cgroup
    dir = nil
  end)

  -- The agent on a scratch copy of the example cluster, ready.
  local function start()
    local env = core_env.open(pending)
    if not env then
      return nil
    end
    dir = scratch.temp_dir()
    assert(os.execute("cp -r examples/cluster/manifests " .. scratch.quote(dir .. "/manifests")) == 0)
    local agent = agent_run.start({ manifests = dir .. "/manifests", cgroup = env:cgroup(), bpffs = env:pin_dir(),
      log = dir .. "/agent.log", node_name = NODE, ready_seconds = READY_SECONDS })
    return agent
  end

  local function plan_view()
    return agent_run.tool_json(agent_run.AGENT, { "plan", "--json", "--manifests", dir .. "/manifests",
      "--node-name", NODE }).frontends
  end

  -- inspect with the agent's pins and run directory (its state.json: the
  -- owners' names)
  local function inspect_view(agent)
    return agent_run.tool_json(agent_run.INSPECT, { "--json", "--bpffs", agent.bpffs, "--run-dir", agent.run_dir,
      "showMapData", "all" }).frontends
  end

  -- Waits (bounded) until inspect shows what plan computes now, every owner
  -- named (the agent rewrites state.json on its loop's tick, after the maps);
  -- the last difference and the agent's log otherwise. Returns both views.
  local function assert_agree(agent, seconds)
    local expected = plan_view()
    local difference, inspected
    local agreed = agent_run.eventually(seconds, function()
      inspected = inspect_view(agent)
      difference = frontend_view.difference(expected, inspected)
      local unnamed = #inspected - frontend_view.owners_given(inspected)
      if difference == nil and unnamed > 0 then
        difference = unnamed .. " frontend(s) without an owner in inspect"
      end
      return difference == nil
    end)
    assert(agreed, string.format("inspect (+) and plan (-) differ %d s after the change:\n%s\n\nagent log:\n%s",
      seconds, tostring(difference), agent:log_tail()))
    return expected, inspected
  end

  it("has the frontends plan computes, and still once the agent followed a manifest change", function()
    local agent = start()
    if not agent then
      return
    end
    -- once /readyz: no waiting needed, the first sync is in the maps
    local before = plan_view()
    assert.is_true(#before > 20, "the example cluster plans " .. #before .. " frontends")
    local inspected = inspect_view(agent)
    assert.is_nil(frontend_view.difference(before, inspected), "inspect (+) and plan (-) differ:\n"
      .. tostring(frontend_view.difference(before, inspected)))
    -- with the run directory inspect names every owner, so the comparison
    -- above covered the owners too
    assert.equals(#inspected, frontend_view.owners_given(inspected))

    -- the change: web loses its node-2 endpoint, a new Service arrives
    local web_path = dir .. "/manifests/web.yaml"
    local web = assert(scratch.read_file(web_path))
    local start_at, end_at = web:find(WEB_NODE2_ENDPOINT, 1, true)
    assert(start_at, "examples/cluster/manifests/web.yaml no longer lists the node-2 endpoint this spec removes")
    replace_file(web_path, web:sub(1, start_at - 1) .. web:sub(end_at + 1))
    replace_file(dir .. "/manifests/extra.yaml", EXTRA_SERVICE)

    local after, followed = assert_agree(agent, FOLLOW_SECONDS)
    -- the change is one: plan sees the new Service and web without 10.244.2.20
    assert.is_not_nil(frontend_view.difference(before, after), "the manifest change changed no frontend")
    local extra = frontend_view.find(after, "10.96.200.1", 8081, "TCP", "service")
    assert.is_table(extra, "plan shows no frontend for the added Service")
    assert.equals(2, #extra.backends)
    assert.equals("spec/extra", frontend_view.find(followed, "10.96.200.1", 8081, "TCP", "service").owner)
    local web_http = frontend_view.find(after, "10.96.100.10", 80, "TCP", "service")
    assert.is_table(web_http)
    for _, backend in ipairs(web_http.backends) do
      assert.are_not.equal("10.244.2.20", backend.address)
    end
  end)
end)
