-- balancing.plan in-process: plan.main(argv, streams) on manifest directories
-- written by the spec, stdout/stderr captured through injected writers and
-- the log through log.set_sink. No binary, no kernel.
local cjson = require("cjson")
local log = require("balancing.log")
local plan = require("balancing.plan")
local frontend_view = require("helpers.frontend_view")
local scratch = require("helpers.scratch")

local find = frontend_view.find
local temp_dir, write_file, remove_dir = scratch.temp_dir, scratch.write_file, scratch.remove_dir

-- A writer with :write that keeps what it is given.
local function capture()
  local parts = {}
  return {
    write = function(self, ...)
      for i = 1, select("#", ...) do
        parts[#parts + 1] = tostring((select(i, ...)))
      end
      return self
    end,
    text = function()
      return table.concat(parts)
    end,
  }
end

local NODES = [[
apiVersion: v1
kind: Node
metadata:
  name: node-1
  labels: {topology.kubernetes.io/zone: zone-a}
  annotations: {balancing.elf.io/nodeId: "1"}
status:
  addresses:
    - {type: InternalIP, address: 192.168.1.1}
---
apiVersion: v1
kind: Node
metadata:
  name: node-2
  annotations: {balancing.elf.io/nodeId: "2"}
status:
  addresses:
    - {type: InternalIP, address: 192.168.1.2}
]]

local WEB = [[
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, uid: 11111111-1111-4111-8111-111111111111}
spec:
  clusterIP: 10.96.1.1
  clusterIPs: [10.96.1.1]
  ports:
    - {name: http, port: 80, protocol: TCP, targetPort: http}
    - {name: metrics, port: 9100, protocol: TCP, targetPort: 9100}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports:
  - {name: http, port: 8080, protocol: TCP}
  - {name: metrics, port: 9100, protocol: TCP}
endpoints:
  - {addresses: [10.244.2.1], conditions: {ready: true}, nodeName: node-2}
  - {addresses: [10.244.1.1], conditions: {ready: true}, nodeName: node-1}
]]

local DNS_REDIRECT = [[
{"apiVersion": "balancing.elf.io/v1beta1", "kind": "LocalRedirectPolicy",
 "metadata": {"name": "dns-here", "annotations": {"balancing.elf.io/serviceId": "7"}},
 "spec": {"frontend": {"addressMatcher": {"ip": "169.254.20.10", "toPorts": [{"port": "53", "protocol": "UDP"}]}},
          "backend": {"endpointSelector": {"matchLabels": {"app": "dns"}},
                      "toPorts": [{"port": "5353", "protocol": "UDP"}]}}}
]]

local DNS_POD = [[
apiVersion: v1
kind: Pod
metadata: {name: dns-1, namespace: kube-system, labels: {app: dns}}
spec: {nodeName: node-1}
status:
  phase: Running
  podIP: 10.244.1.53
  conditions: [{type: Ready, status: "True"}]
]]

local BAD_POLICY = [[
apiVersion: balancing.elf.io/v1beta1
kind: BalancingPolicy
metadata: {name: bad-port}
spec:
  frontend:
    addressMatcher: {ip: 10.200.0.1, toPorts: [{port: "70000", protocol: TCP}]}
  backend:
    addressEndpoint: {addresses: [192.0.2.1], toPorts: [{port: "80", protocol: TCP}]}
]]

-- A standard directory: nodes, the web Service, a LocalRedirect to a DNS pod,
-- one invalid policy.
local function cluster_dir()
  local dir = temp_dir()
  write_file(dir .. "/nodes.yaml", NODES)
  write_file(dir .. "/web.yaml", WEB)
  write_file(dir .. "/dns-redirect.json", DNS_REDIRECT)
  write_file(dir .. "/dns-pod.yml", DNS_POD)
  write_file(dir .. "/bad.yaml", BAD_POLICY)
  return dir
end

-- Runs plan.main; returns status, stdout, stderr, log lines (decoded).
local function run(argv, env)
  local out, err = capture(), capture()
  local lines = {}
  log.set_sink(function(line)
    lines[#lines + 1] = cjson.decode(line)
  end)
  local status = plan.main(argv, {
    stdout = out,
    stderr = err,
    getenv = function(name)
      return (env or {})[name]
    end,
  })
  log.set_sink(nil)
  return status, out.text(), err.text(), lines
end

describe("plan.main", function()
  local dir
  before_each(function()
    dir = cluster_dir()
  end)
  after_each(function()
    remove_dir(dir)
  end)

  it("prints the JSON document of CONTRACTS.md with --json, and nothing else on stdout", function()
    local status, stdout, stderr = run({ "--manifests", dir, "--node-name", "node-1", "--json" })
    assert.equals(0, status)
    assert.equals("", stderr)
    local doc = cjson.decode(stdout)
    assert.same({ "frontends", "rejected" }, (function()
      local keys = {}
      for key in pairs(doc) do
        keys[#keys + 1] = key
      end
      table.sort(keys)
      return keys
    end)())
    local http = find(doc.frontends, "10.96.1.1", 80, "TCP", "service")
    assert.same({
      { address = "10.244.1.1", port = 8080, ["local"] = true },
      { address = "10.244.2.1", port = 8080, ["local"] = false },
    }, http.backends)
    assert.equals("default/web", http.owner)
    assert.equals("ClusterIP", http.mode)
  end)

  it("resolves a named targetPort through the EndpointSlice port of the same name", function()
    local _, stdout = run({ "--manifests", dir, "--node-name", "node-1", "--json" })
    local doc = cjson.decode(stdout)
    assert.equals(8080, find(doc.frontends, "10.96.1.1", 80, "TCP", "service").backends[1].port)
    assert.equals(9100, find(doc.frontends, "10.96.1.1", 9100, "TCP", "service").backends[1].port)
  end)

  it("plans for the node it is given: local flags and LocalRedirect backends follow --node-name", function()
    local _, stdout = run({ "--manifests", dir, "--node-name", "node-2", "--json" })
    local doc = cjson.decode(stdout)
    assert.same({ address = "10.244.2.1", port = 8080, ["local"] = true },
      find(doc.frontends, "10.96.1.1", 80, "TCP", "service").backends[1])
    -- the DNS pod runs on node-1: no redirect entry on node-2
    assert.is_nil(find(doc.frontends, "169.254.20.10", 53, "UDP", "localRedirect"))
  end)

  it("lists the LocalRedirect entry with its local backend on the backend's node", function()
    local _, stdout = run({ "--manifests", dir, "--node-name", "node-1", "--json" })
    local f = find(cjson.decode(stdout).frontends, "169.254.20.10", 53, "UDP", "localRedirect")
    assert.same({ address = "169.254.20.10", port = 53, protocol = "UDP", type = "localRedirect",
      mode = "address", owner = "dns-here", id = 7, affinitySeconds = 0, localOnly = false,
      backends = { { address = "10.244.1.53", port = 5353, ["local"] = true } } }, f)
  end)

  it("reports an invalid policy in rejected, naming the field, and still exits 0", function()
    local status, stdout = run({ "--manifests", dir, "--node-name", "node-1", "--json" })
    assert.equals(0, status)
    local rejected = cjson.decode(stdout).rejected
    assert.equals(1, #rejected)
    assert.equals("BalancingPolicy", rejected[1].kind)
    assert.equals("bad-port", rejected[1].name)
    assert.matches("spec%.frontend%.addressMatcher%.toPorts%[0%]%.port", rejected[1].reason)
  end)

  it("prints aligned tables by default: the frontends, then the rejected objects", function()
    local status, stdout = run({ "--manifests", dir, "--node-name", "node-1" })
    assert.equals(0, status)
    assert.matches("^TYPE%s+MODE%s+ADDRESS%s+PORT%s+PROTO%s+OWNER%s+ID%s+AFFINITY%s+LOCAL%-ONLY%s+BACKENDS\n", stdout)
    assert.matches("\nservice%s+ClusterIP%s+10%.96%.1%.1%s+80%s+TCP%s+default/web%s+%d+%s+%-%s+no%s+"
      .. "10%.244%.1%.1:8080%*,10%.244%.2%.1:8080\n", stdout)
    assert.matches("\nrejected:\nKIND%s+NAME%s+REASON\nBalancingPolicy%s+bad%-port%s+spec%.frontend", stdout)
  end)

  it("gives byte-identical output on every run", function()
    local _, first = run({ "--manifests", dir, "--node-name", "node-1", "--json" })
    local _, second = run({ "--manifests", dir, "--node-name", "node-1", "--json" })
    assert.equals(first, second)
  end)

  it("reports a file that does not parse as a rejected File, logs it, and plans the rest", function()
    write_file(dir .. "/broken.yaml", "kind: Service\nmetadata: [unclosed\n")
    local status, stdout, _, lines = run({ "--manifests", dir, "--node-name", "node-1", "--json" })
    assert.equals(0, status)
    local doc = cjson.decode(stdout)
    local file_rejection
    for _, r in ipairs(doc.rejected) do
      if r.kind == "File" then
        file_rejection = r
      end
    end
    assert.same("broken.yaml", file_rejection and file_rejection.name)
    assert.is_table(find(doc.frontends, "10.96.1.1", 80, "TCP", "service"))
    assert.equals(1, #lines)
    assert.equals("warn", lines[1].level)
    assert.equals("broken.yaml", lines[1].file)
  end)

  it("reports an object the store refuses with its kind and name, and logs it", function()
    write_file(dir .. "/nameless.yaml", "apiVersion: v1\nkind: Service\nmetadata: {namespace: default}\n")
    local _, stdout, _, lines = run({ "--manifests", dir, "--node-name", "node-1", "--json" })
    local doc = cjson.decode(stdout)
    local found
    for _, r in ipairs(doc.rejected) do
      if r.kind == "Service" then
        found = r
      end
    end
    assert.is_table(found)
    assert.equals("default/?", found.name)
    assert.equals("object refused", lines[1].msg)
  end)

  it("ignores, at debug level, objects of kinds the agent does not read", function()
    write_file(dir .. "/deploy.yaml",
      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\n")
    local status, stdout, _, lines = run({ "--manifests", dir, "--node-name", "node-1", "--json" })
    assert.equals(0, status)
    assert.equals(0, #lines)
    assert.equals(1, #cjson.decode(stdout).rejected)
    _, _, _, lines = run({ "--manifests", dir, "--node-name", "node-1", "--json", "--log-level", "debug" })
    assert.equals("object ignored", lines[1].msg)
    assert.equals("Deployment", lines[1].kind)
  end)

  it("warns when the node is not among the objects, and plans without local backends", function()
    local status, stdout, _, lines = run({ "--manifests", dir, "--node-name", "elsewhere", "--json" })
    assert.equals(0, status)
    assert.equals("elsewhere", lines[1].node)
    local http = find(cjson.decode(stdout).frontends, "10.96.1.1", 80, "TCP", "service")
    assert.is_false(http.backends[1]["local"])
  end)

  it("takes the directory, node name and out-cluster from NODE_NAME, BALANCING_MANIFESTS, BALANCING_OUT_CLUSTER",
    function()
      local status, stdout = run({ "--json" }, { BALANCING_MANIFESTS = dir, NODE_NAME = "node-1" })
      assert.equals(0, status)
      local doc = cjson.decode(stdout)
      assert.is_table(find(doc.frontends, "169.254.20.10", 53, "UDP", "localRedirect"))

      -- outside the cluster a LocalRedirectPolicy has no local pod to send to
      status, stdout = run({ "--json" },
        { BALANCING_MANIFESTS = dir, NODE_NAME = "node-1", BALANCING_OUT_CLUSTER = "1" })
      assert.equals(0, status)
      assert.is_nil(find(cjson.decode(stdout).frontends, "169.254.20.10", 53, "UDP", "localRedirect"))
    end)

  it("lets the command line win over the environment", function()
    local _, stdout = run({ "--json", "--node-name", "node-2" }, { BALANCING_MANIFESTS = dir, NODE_NAME = "node-1" })
    local http = find(cjson.decode(stdout).frontends, "10.96.1.1", 80, "TCP", "service")
    assert.equals("10.244.2.1", http.backends[1].address)
  end)

  it("uses the host name when no node name is given", function()
    local handle = assert(io.popen("hostname"))
    local host = handle:read("*l")
    handle:close()
    local options = assert(plan.parse_args({ "--manifests", dir }, function() return nil end))
    assert.equals(host, options.node_name)
  end)

  it("accepts the agent's other options without changing the plan", function()
    local _, plain = run({ "--manifests", dir, "--node-name", "node-1", "--json" })
    local status, with_agent_options = run({ "--manifests", dir, "--node-name", "node-1", "--json",
      "--bpffs", "/sys/fs/bpf/x", "--cgroup=/run/x", "--redirect-qos-limit", "5", "--listen", "127.0.0.1:1" })
    assert.equals(0, status)
    assert.equals(plain, with_agent_options)
  end)

  it("sets the log level: --log-level error drops the warnings", function()
    local _, _, _, lines = run({ "--manifests", dir, "--node-name", "elsewhere", "--log-level", "error" })
    assert.equals(0, #lines)
  end)
end)

describe("plan.main refuses", function()
  local function refused(argv, env, pattern)
    local status, stdout, stderr = run(argv, env)
    assert.equals(2, status)
    assert.equals("", stdout)
    assert.matches("^balancing%-agent plan: [^\n]+\n$", stderr)
    assert.matches(pattern, stderr)
  end

  it("an unknown option, naming it", function()
    refused({ "--manifests", "/tmp", "--frobnicate" }, nil, "unknown option %-%-frobnicate")
  end)

  it("an option without its value", function()
    refused({ "--manifests" }, nil, "%-%-manifests needs a value")
  end)

  it("a bad log level, from the option or the variable", function()
    refused({ "--manifests", "/tmp", "--log-level", "loud" }, nil, '%-%-log%-level: "loud"')
    refused({ "--manifests", "/tmp" }, { BALANCING_LOG_LEVEL = "loud" }, 'BALANCING_LOG_LEVEL: "loud"')
  end)

  it("a bad BALANCING_OUT_CLUSTER", function()
    refused({ "--manifests", "/tmp" }, { BALANCING_OUT_CLUSTER = "maybe" }, "BALANCING_OUT_CLUSTER")
  end)

  it("no source at all", function()
    refused({ "--node-name", "n" }, nil, "%-%-manifests")
  end)

  it("a directory that does not exist, naming it", function()
    refused({ "--manifests", "/nonexistent/balancing-plan", "--node-name", "n" }, nil, "/nonexistent/balancing%-plan")
  end)

  it("a positional argument", function()
    refused({ "everything" }, nil, 'unexpected argument "everything"')
  end)
end)

describe("plan.main --help", function()
  it("prints the usage on stdout and exits 0", function()
    local status, stdout, stderr = run({ "--help" })
    assert.equals(0, status)
    assert.equals("", stderr)
    for _, option in ipairs({ "--manifests", "--node-name", "--json", "--out-cluster", "--lua-dir", "--log-level" }) do
      assert.matches(option:gsub("%-", "%%-"), stdout)
    end
  end)
end)

describe("plan with Lua overrides", function()
  local dir, overrides
  before_each(function()
    dir = cluster_dir()
    overrides = temp_dir()
  end)
  after_each(function()
    remove_dir(dir)
    remove_dir(overrides)
  end)

  -- An override that loads the built-in module found after its own directory
  -- on package.path, and changes its result.
  local WRAPPER = [[
local here = debug.getinfo(1, "S").source:sub(2)
local root = here:match("^(.*)/balancing/reconcile/service%.lua$")
local rest = {}
for entry in package.path:gmatch("[^;]+") do
  if entry:sub(1, #root + 1) ~= root .. "/" then
    rest[#rest + 1] = entry
  end
end
local builtin = dofile(assert(package.searchpath("balancing.reconcile.service", table.concat(rest, ";"))))
local M = {}
function M.desired(store, ctx, namespace, name)
  BODY
end
return M
]]

  local function override_service(body)
    write_file(overrides .. "/balancing/reconcile/service.lua", (WRAPPER:gsub("BODY", function() return body end)))
  end

  it("uses an override from --lua-dir before the built-in module", function()
    override_service([[
  local entries, rejections = builtin.desired(store, ctx, namespace, name)
  local kept = {}
  for _, f in ipairs(entries.frontends) do
    if require("balancing.abi").ntohs(f.key.port) ~= 9100 then
      kept[#kept + 1] = f
    end
  end
  entries.frontends = kept
  return entries, rejections]])
    local status, stdout = run({ "--manifests", dir, "--node-name", "node-1", "--json", "--lua-dir", overrides })
    assert.equals(0, status)
    local doc = cjson.decode(stdout)
    assert.is_nil(find(doc.frontends, "10.96.1.1", 9100, "TCP", "service"))
    assert.is_table(find(doc.frontends, "10.96.1.1", 80, "TCP", "service"))
  end)

  it("leaves the built-in modules in place after an override run", function()
    override_service("return { owner = 'service/' .. namespace .. '/' .. name, frontends = {} }, {}")
    run({ "--manifests", dir, "--node-name", "node-1", "--json", "--lua-dir", overrides })
    local _, stdout = run({ "--manifests", dir, "--node-name", "node-1", "--json" })
    assert.is_table(find(cjson.decode(stdout).frontends, "10.96.1.1", 9100, "TCP", "service"))
  end)

  it("logs a module failing for one owner with module and owner, plans the others, exits 1", function()
    override_service([[
  if name == "web" then
    error("web is not welcome here")
  end
  return builtin.desired(store, ctx, namespace, name)]])
    write_file(dir .. "/other.yaml", [[
apiVersion: v1
kind: Service
metadata: {name: other, namespace: default}
spec:
  clusterIP: 10.96.1.2
  ports: [{name: http, port: 80, protocol: TCP}]
]])
    local status, stdout, _, lines = run({ "--manifests", dir, "--node-name", "node-1", "--json",
      "--lua-dir", overrides })
    assert.equals(1, status)
    local doc = cjson.decode(stdout)
    assert.is_nil(find(doc.frontends, "10.96.1.1", 80, "TCP", "service"))
    assert.is_table(find(doc.frontends, "10.96.1.2", 80, "TCP", "service"))
    assert.is_table(find(doc.frontends, "169.254.20.10", 53, "UDP", "localRedirect"))
    assert.equals(1, #lines)
    assert.equals("error", lines[1].level)
    assert.equals("balancing.reconcile.service", lines[1].module)
    assert.equals("service/default/web", lines[1].owner)
    assert.matches("web is not welcome here", lines[1].error)
  end)

  it("logs a broken override (syntax error) naming the module and file, plans the rest, exits 1", function()
    write_file(overrides .. "/balancing/reconcile/service.lua", "local M = {\nreturn M\n")
    local status, stdout, _, lines = run({ "--manifests", dir, "--node-name", "node-1", "--json",
      "--lua-dir", overrides })
    assert.equals(1, status)
    local doc = cjson.decode(stdout)
    assert.is_nil(find(doc.frontends, "10.96.1.1", 80, "TCP", "service"))
    assert.is_table(find(doc.frontends, "169.254.20.10", 53, "UDP", "localRedirect"))
    assert.equals(1, #lines)
    assert.equals("module failed to load", lines[1].msg)
    assert.equals("balancing.reconcile.service", lines[1].module)
    assert.matches("balancing/reconcile/service%.lua:%d+:", lines[1].error)
  end)
end)
