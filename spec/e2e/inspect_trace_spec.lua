-- `inspect traceMapData` and the owners' names of `inspect showMapData`
-- (CONTRACTS.md "inspect"; issue 9) with the real agent on real maps: one
-- object's frontends as programmed, why one is not (rejected, lost a
-- conflict, no usable endpoints, not for this node, no local backend), from
-- the state the agent keeps under --run-dir, also once the agent has stopped.
local agent_run = require("helpers.agent_run")
local cjson = require("cjson")
local core_env = require("helpers.core_env")
local scratch = require("helpers.scratch")

local build_dir = os.getenv("BALANCING_BUILD_DIR") or "build"
local INSPECT = build_dir .. "/bin/inspect"
local EXAMPLE = "examples/cluster/manifests"

local function quote_all(words)
  local quoted = {}
  for i, word in ipairs(words) do
    quoted[i] = scratch.quote(word)
  end
  return table.concat(quoted, " ")
end

describe("inspect traceMapData, with the agent", function()
  local dir, agent

  after_each(function()
    agent_run.teardown(dir)
    dir, agent = nil, nil
  end)

  -- The agent on a copy of the example cluster, as node.
  local function start(node)
    local env = core_env.open(pending)
    if not env then
      return nil
    end
    dir = scratch.temp_dir()
    assert(os.execute("cp -r " .. EXAMPLE .. " " .. scratch.quote(dir .. "/manifests")) == 0)
    agent = agent_run.start({ manifests = dir .. "/manifests", cgroup = env:cgroup(), bpffs = env:pin_dir(),
      log = dir .. "/agent.log", node_name = node or "node-1" })
    return agent
  end

  -- inspect with the agent's pins and run directory (or run_dir): status, stdout, stderr.
  local function inspect(words, run_dir)
    return scratch.run(string.format("env -u BALANCING_BPFFS -u BALANCING_RUN_DIR %s --bpffs %s --run-dir %s %s",
      INSPECT, scratch.quote(agent.bpffs), scratch.quote(run_dir or agent.run_dir), quote_all(words)))
  end

  local function trace_json(...)
    local status, stdout, stderr = inspect({ "--json", "traceMapData", ... })
    assert.equals(0, status, stderr)
    return cjson.decode(stdout)
  end

  -- A frontend as one comparable line: key, owner, id, backends.
  local function line_of(f)
    local backends = {}
    for i, b in ipairs(f.backends) do
      backends[i] = b.address .. ":" .. b.port .. (b["local"] and "*" or "")
    end
    return table.concat({ f.type, f.mode, f.address, f.port, f.protocol, f.owner, f.id, table.concat(backends, ",") },
      " ")
  end

  local function lines_of(view, owner)
    local out = {}
    for _, f in ipairs(view) do
      if not owner or f.owner == owner then
        out[#out + 1] = line_of(f)
      end
    end
    table.sort(out)
    return out
  end

  local function plan_view(node)
    local status, stdout, stderr = scratch.run(string.format("%s plan --json --manifests %s --node-name %s",
      agent_run.AGENT, scratch.quote(dir .. "/manifests"), node or "node-1"))
    assert.equals(0, status, stderr)
    return cjson.decode(stdout).frontends
  end

  local function reasons_of(document)
    return table.concat(document.objects[1].reasons, "\n")
  end

  it("shows a Service's frontends as programmed, named, and as plan computes them", function()
    if not start() then
      return
    end
    local document = trace_json("service", "kube-system", "kube-dns")
    assert.equals(3, #document.frontends)
    assert.same(lines_of(plan_view(), "kube-system/kube-dns"), lines_of(document.frontends))
    assert.same({ kind = "Service", name = "kube-system/kube-dns", id = document.frontends[1].id, programmed = true,
      reasons = {} }, document.objects[1])
    assert.equals(3, #document.maps.map_service)
    assert.equals(6, #document.maps.map_backend) -- two backends for each frontend

    -- and showMapData names every owner as plan does
    local status, stdout, stderr = inspect({ "--json", "showMapData", "service" })
    assert.equals(0, status, stderr)
    assert.same(lines_of(plan_view()), lines_of(cjson.decode(stdout).frontends))
  end)

  it("says why an object is not programmed, or programs a frontend without backends", function()
    if not start() then
      return
    end
    local cases = {
      { { "service", "default", "db" }, "service not programmed: no IPv4 ClusterIP" },
      { { "service", "default", "search" }, "service not programmed: type ExternalName" },
      { { "service", "monitoring", "metrics" }, "left to another proxy" },
      { { "localRedirect", "kube-system", "node-local-dns-copy" },
        "rejected: frontend 10.96.0.10:53/UDP is claimed by older LocalRedirectPolicy node-local-dns" },
      { { "balancing", "default", "bad-address" }, 'rejected: spec.frontend.addressMatcher.ip: "10.200.0.300"' },
      { { "service", "default", "internal-api" }, "no usable endpoints: 10.96.100.30:9000/TCP (ClusterIP) "
        .. "has no backend on this node; a client gets EHOSTUNREACH" },
    }
    for _, case in ipairs(cases) do
      local document = trace_json(unpack(case[1]))
      assert.matches(case[2], reasons_of(document), 1, true)
    end
    -- (a frontend without backends is programmed: the client gets an error, not another address)
    assert.is_true(trace_json("service", "default", "internal-api").objects[1].programmed)
    assert.is_false(trace_json("service", "default", "db").objects[1].programmed)

    -- in tables too
    local status, stdout = inspect({ "traceMapData", "localRedirect", "any", "node-local-dns-copy" })
    assert.equals(0, status)
    assert.matches("LocalRedirectPolicy node%-local%-dns%-copy %(id %d+%): not programmed\n  %- rejected: ", stdout)
  end)

  it("finds a BalancingPolicy by its name or by the Service its frontend matches", function()
    if not start() then
      return
    end
    local by_name = trace_json("balancing", "any", "web-pods")
    local by_service = trace_json("balancing", "default", "web")
    assert.same(by_name, by_service)
    assert.equals("web-pods", by_name.objects[1].name)
    assert.same({ "balancing podEndpoint 10.96.100.10 80 TCP web-pods 20 10.244.1.20:8080*,10.244.2.20:8080" },
      lines_of(by_name.frontends))
  end)

  it("refuses an object the agent does not know (exit 2) and a missing state (exit 1), one line each", function()
    if not start() then
      return
    end
    local status, stdout, stderr = inspect({ "traceMapData", "service", "default", "nope" })
    assert.equals(2, status)
    assert.equals("", stdout)
    assert.matches("^inspect: Service default/nope not found: the agent has no such object", stderr)
    assert.equals(1, select(2, stderr:gsub("\n", "")))

    local elsewhere = dir .. "/elsewhere"
    status, stdout, stderr = inspect({ "traceMapData", "service", "kube-system", "kube-dns" }, elsewhere)
    assert.equals(1, status)
    assert.equals("", stdout)
    assert.matches("no agent state at " .. elsewhere .. "/state.json", stderr, 1, true)
    -- showMapData still works, its owners unnamed, and says why on stderr
    status, stdout, stderr = inspect({ "--json", "showMapData", "service" }, elsewhere)
    assert.equals(0, status)
    assert.equals("", cjson.decode(stdout).frontends[1].owner)
    assert.matches("owners not named: no agent state at", stderr, 1, true)

    status, stdout, stderr = inspect({ "traceMapData", "service", "kube-system" })
    assert.equals("", stdout)
    assert.equals(2, status)
    assert.matches("takes NAMESPACE and NAME", stderr, 1, true)
  end)

  it("follows the agent: a deleted Service is gone from the state, and names stay once it stops", function()
    if not start() then
      return
    end
    local path = dir .. "/manifests/services.yaml"
    local text = assert(scratch.read_file(path))
    assert.matches("name: cache", text, 1, true)
    -- every document but the cache Service
    local kept = {}
    for document in (text .. "\n---\n"):gmatch("(.-)\n%-%-%-\n") do
      if not document:find("name: cache", 1, true) then
        kept[#kept + 1] = document
      end
    end
    scratch.write_file(path, table.concat(kept, "\n---\n") .. "\n")
    local gone = agent_run.eventually(10, function()
      return inspect({ "traceMapData", "service", "default", "cache" }) == 2
    end)
    assert.is_true(gone, "default/cache still in the agent's state 10 s after its manifest was removed")

    agent:kill("TERM")
    local document = trace_json("service", "kube-system", "kube-dns")
    assert.equals(3, #document.frontends)
    assert.equals("kube-system/kube-dns", document.frontends[1].owner)
  end)

  it("says a policy is not for this node (nodeLabelSelector) or has no local backend here", function()
    if not start("node-3") then
      return
    end
    assert.matches("not programmed: nodeLabelSelector does not select node node-3",
      reasons_of(trace_json("localRedirect", "kube-system", "node-local-dns")), 1, true)
    assert.matches("not programmed: no local backend on this node (no running pod with an IPv4 address on node "
      .. "node-3 matches the backend selector)", reasons_of(trace_json("localRedirect", "", "link-local-dns")), 1, true)
  end)
end)
