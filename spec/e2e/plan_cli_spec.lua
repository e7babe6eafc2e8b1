-- The real binaries, as a user runs them: ${BALANCING_BUILD_DIR:-build}/bin/
-- balancing-agent (options, plan) and inspect (its command line). No root,
-- no kernel: plan touches nothing.
local apiserver = require("helpers.apiserver")
local cjson = require("cjson")
local frontend_view = require("helpers.frontend_view")
local scratch = require("helpers.scratch")

local build_dir = os.getenv("BALANCING_BUILD_DIR") or "build"
local AGENT = build_dir .. "/bin/balancing-agent"
local INSPECT = build_dir .. "/bin/inspect"

local find = frontend_view.find
local sh_quote, temp_dir, write_file = scratch.quote, scratch.temp_dir, scratch.write_file
local remove_dir = scratch.remove_dir

local function read_all(path)
  local file = io.open(path, "rb")
  if not file then
    return ""
  end
  local text = file:read("*a")
  file:close()
  return text
end

-- Runs a binary with arguments and extra environment (name → value, false to
-- unset); returns exit status, stdout, stderr.
local function run(binary, args, env)
  local work = temp_dir()
  local parts = { "env" }
  -- a clean slate for the variables the binaries read, so that the caller's
  -- environment does not leak into what is tested
  for _, name in ipairs({ "NODE_NAME", "BALANCING_MANIFESTS", "BALANCING_OUT_CLUSTER", "BALANCING_LUA_DIR",
    "BALANCING_LOG_LEVEL", "BALANCING_BPF_LOG_LEVEL", "BALANCING_REDIRECT_QOS_LIMIT", "BALANCING_LISTEN",
    "BALANCING_CGROUP", "BALANCING_BPFFS", "KUBECONFIG", "KUBERNETES_SERVICE_HOST", "BALANCING_LUA_BUILTIN_DIR" }) do
    parts[#parts + 1] = "-u " .. name
  end
  for name, value in pairs(env or {}) do
    if value then
      parts[#parts + 1] = name .. "=" .. sh_quote(value)
    end
  end
  parts[#parts + 1] = sh_quote(binary)
  for _, arg in ipairs(args) do
    parts[#parts + 1] = sh_quote(arg)
  end
  local command = table.concat(parts, " ") .. " >" .. work .. "/out 2>" .. work .. "/err; echo $?"
  local handle = assert(io.popen(command))
  local status = tonumber(handle:read("*l"))
  handle:close()
  local stdout, stderr = read_all(work .. "/out"), read_all(work .. "/err")
  remove_dir(work)
  return status, stdout, stderr
end

local function lines_of(text)
  local lines = {}
  for line in text:gmatch("([^\n]*)\n") do
    lines[#lines + 1] = line
  end
  return lines
end

-- Every stderr line of plan is a JSON log line; returns them decoded.
local function log_lines(stderr)
  local decoded = {}
  for _, line in ipairs(lines_of(stderr)) do
    local ok, value = pcall(cjson.decode, line)
    assert(ok and type(value) == "table", "stderr line is not JSON: " .. line)
    assert.is_string(value.time)
    assert.is_string(value.level)
    assert.is_string(value.msg)
    decoded[#decoded + 1] = value
  end
  return decoded
end

local CLUSTER = {
  ["nodes.yaml"] = [[
apiVersion: v1
kind: Node
metadata: {name: node-1, annotations: {balancing.elf.io/nodeId: "1"}}
status: {addresses: [{type: InternalIP, address: 192.168.1.1}]}
]],
  ["web.yaml"] = [[
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.1.1
  ports:
    - {name: http, port: 80, protocol: TCP, targetPort: http}
    - {name: dns, port: 53, protocol: UDP, targetPort: 5353}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}, {name: dns, port: 5353, protocol: UDP}]
endpoints:
  - {addresses: [10.244.1.1], conditions: {ready: true}, nodeName: node-1}
]],
}

local function cluster_dir()
  local dir = temp_dir()
  for name, text in pairs(CLUSTER) do
    write_file(dir .. "/" .. name, text)
  end
  return dir
end

describe("balancing-agent", function()
  setup(function()
    assert(io.open(AGENT, "rb"), AGENT .. " is missing: build first (cmake --build " .. build_dir .. ")"):close()
  end)

  it("--help prints every option and the plan subcommand, exit 0", function()
    local status, stdout, stderr = run(AGENT, { "--help" })
    assert.equals(0, status)
    assert.equals("", stderr)
    for _, option in ipairs({ "--node-name", "--kubeconfig", "--manifests", "--cgroup", "--bpffs", "--lua-dir",
      "--listen", "--log-level", "--bpf-log-level", "--redirect-qos-limit", "--out-cluster",
      "--service-proxy-name", "--events" }) do
      assert.matches("\n%s+" .. option:gsub("%-", "%%-") .. "[ \n]", stdout)
    end
    for _, env in ipairs({ "NODE_NAME", "KUBECONFIG", "BALANCING_MANIFESTS", "BALANCING_CGROUP", "BALANCING_BPFFS",
      "BALANCING_LUA_DIR", "BALANCING_LISTEN", "BALANCING_LOG_LEVEL", "BALANCING_BPF_LOG_LEVEL",
      "BALANCING_REDIRECT_QOS_LIMIT", "BALANCING_OUT_CLUSTER", "BALANCING_SERVICE_PROXY_NAME",
      "BALANCING_EVENTS" }) do
      assert.matches("%[" .. env .. "%]", stdout)
    end
    assert.matches("balancing%-agent plan %[options%]", stdout)
  end)

  local bad = {
    { args = { "--log-level", "foo" }, names = "%-%-log%-level" },
    { args = { "--redirect-qos-limit", "-1" }, names = "%-%-redirect%-qos%-limit" },
    { args = { "--redirect-qos-limit", "4294967296" }, names = "%-%-redirect%-qos%-limit" },
    { args = { "--bpf-log-level", "loud" }, names = "%-%-bpf%-log%-level" },
    { args = { "--listen", "localhost" }, names = "%-%-listen" },
    { args = { "--no-such-option" }, names = "%-%-no%-such%-option" },
    { args = { "--node-name" }, names = "%-%-node%-name" },
    { args = { "--out-cluster=yes" }, names = "%-%-out%-cluster" },
    { args = { "--service-proxy-name" }, names = "%-%-service%-proxy%-name" },
    { args = { "--events", "some" }, names = "%-%-events" },
    { args = {}, env = { BALANCING_EVENTS = "loud" }, names = "BALANCING_EVENTS" },
    { args = { "stray" }, names = "stray" },
    { args = {}, env = { BALANCING_LOG_LEVEL = "chatty" }, names = "BALANCING_LOG_LEVEL" },
    { args = {}, env = { BALANCING_REDIRECT_QOS_LIMIT = "many" }, names = "BALANCING_REDIRECT_QOS_LIMIT" },
    { args = { "--manifests", "/nonexistent/balancing" }, names = "/nonexistent/balancing" },
    { args = { "--kubeconfig", "/nonexistent/kubeconfig" }, names = "/nonexistent/kubeconfig" },
  }
  for _, case in ipairs(bad) do
    it("refuses " .. table.concat(case.args, " ") .. (case.env and next(case.env) or "")
      .. " with one line naming it, exit 2", function()
      local status, stdout, stderr = run(AGENT, case.args, case.env)
      assert.equals(2, status)
      assert.equals("", stdout)
      assert.equals(1, #lines_of(stderr), stderr)
      assert.matches(case.names, stderr)
    end)
  end

  it("refuses a kubeconfig it cannot use with one line naming it, exit 2, before touching anything", function()
    local dir = cluster_dir()
    write_file(dir .. "/kubeconfig", "apiVersion: v1\nkind: Config\n")
    -- a --cgroup that start-up would refuse (a file), should it get that far
    write_file(dir .. "/not-a-cgroup", "")
    local status, stdout, stderr = run(AGENT, { "--kubeconfig", dir .. "/kubeconfig", "--log-level", "debug",
      "--cgroup", dir .. "/not-a-cgroup", "--bpffs", dir .. "/pins", "--listen", "127.0.0.1:1" })
    remove_dir(dir)
    assert.equals(2, status)
    assert.equals("", stdout)
    assert.equals(1, #lines_of(stderr), stderr)
    assert.matches("kubeconfig " .. dir .. "/kubeconfig: current-context is not set", stderr, 1, true)
  end)
end)

describe("balancing-agent plan", function()
  local dir
  before_each(function()
    dir = cluster_dir()
  end)
  after_each(function()
    remove_dir(dir)
  end)

  it("without --manifests reads the API server as the agent does: the same document as from the directory", function()
    local server = apiserver.start({ tls = true, token = "plan-token", manifests = "examples/cluster/manifests" })
    local status, stdout, stderr = run(AGENT, { "plan", "--kubeconfig", server:kubeconfig(), "--node-name", "node-1",
      "--json" })
    local _, expected = run(AGENT, { "plan", "--manifests", "examples/cluster/manifests", "--node-name", "node-1",
      "--json" })
    local requests = server:requests()
    apiserver.stop_all()
    assert.equals(0, status, stderr)
    assert.same(cjson.decode(expected), cjson.decode(stdout))
    for _, request in ipairs(requests) do
      assert.equals("GET", request.method) -- plan writes nothing to the cluster
    end
  end)

  it("--help prints its usage, exit 0", function()
    local status, stdout, stderr = run(AGENT, { "plan", "--help" })
    assert.equals(0, status)
    assert.equals("", stderr)
    assert.matches("usage: balancing%-agent plan", stdout)
  end)

  it("--json prints one JSON document on stdout, exit 0", function()
    local status, stdout, stderr = run(AGENT, { "plan", "--manifests", dir, "--node-name", "node-1", "--json" })
    assert.equals(0, status)
    assert.equals("", stderr)
    local doc = cjson.decode(stdout)
    local http = find(doc.frontends, "10.96.1.1", 80, "TCP")
    assert.same({ { address = "10.244.1.1", port = 8080, ["local"] = true } }, http.backends)
    assert.equals("default/web", http.owner)
    assert.same({}, doc.rejected)
    assert.matches('"rejected": %[%]', stdout)
  end)

  it("prints the table without --json", function()
    local status, stdout = run(AGENT, { "plan", "--manifests", dir, "--node-name", "node-1" })
    assert.equals(0, status)
    assert.matches("^TYPE%s+MODE%s+ADDRESS", stdout)
    assert.matches("\nservice%s+ClusterIP%s+10%.96%.1%.1%s+53%s+UDP%s+default/web", stdout)
  end)

  it("writes its logs on stderr only, as JSON lines", function()
    local status, stdout, stderr = run(AGENT, { "plan", "--manifests", dir, "--node-name", "node-9", "--json" })
    assert.equals(0, status)
    cjson.decode(stdout) -- the whole of stdout is the document
    local logs = log_lines(stderr)
    assert.equals(1, #logs)
    assert.equals("node-9", logs[1].node)
  end)

  it("reads NODE_NAME and BALANCING_MANIFESTS", function()
    local status, stdout = run(AGENT, { "plan", "--json" }, { NODE_NAME = "node-1", BALANCING_MANIFESTS = dir })
    assert.equals(0, status)
    assert.is_true(find(cjson.decode(stdout).frontends, "10.96.1.1", 80, "TCP").backends[1]["local"])
  end)

  it("refuses a missing directory with one line naming it, exit 2", function()
    local status, stdout, stderr = run(AGENT, { "plan", "--manifests", dir .. "/missing", "--node-name", "n" })
    assert.equals(2, status)
    assert.equals("", stdout)
    assert.equals(1, #lines_of(stderr))
    assert.matches(dir:gsub("%p", "%%%0") .. "/missing", stderr)
  end)

  it("refuses a bad option with one line naming it, exit 2", function()
    local status, stdout, stderr = run(AGENT, { "plan", "--manifests", dir, "--colour" })
    assert.equals(2, status)
    assert.equals("", stdout)
    assert.equals(1, #lines_of(stderr))
    assert.matches("%-%-colour", stderr)
  end)

  describe("with a Lua override directory", function()
    local overrides
    before_each(function()
      overrides = temp_dir()
    end)
    after_each(function()
      remove_dir(overrides)
    end)

    -- Wraps the built-in reconcile/service.lua (found through the host's
    -- balancing.host table) and drops the UDP frontends.
    local DROP_UDP = [[
local host = package.loaded["balancing.host"]
local builtin = dofile(host.builtin_dir .. "/balancing/reconcile/service.lua")
local M = {}
function M.desired(store, ctx, namespace, name)
  local entries, rejections = builtin.desired(store, ctx, namespace, name)
  local kept = {}
  for _, f in ipairs(entries.frontends) do
    if f.key.protocol ~= 17 then
      kept[#kept + 1] = f
    end
  end
  entries.frontends = kept
  return entries, rejections
end
return M
]]

    it("uses an override from --lua-dir before the built-in module", function()
      write_file(overrides .. "/balancing/reconcile/service.lua", DROP_UDP)
      local status, stdout, stderr = run(AGENT, { "plan", "--manifests", dir, "--node-name", "node-1", "--json",
        "--lua-dir", overrides })
      assert.equals(0, status, stderr)
      local doc = cjson.decode(stdout)
      assert.is_nil(find(doc.frontends, "10.96.1.1", 53, "UDP"))
      assert.is_table(find(doc.frontends, "10.96.1.1", 80, "TCP"))
    end)

    it("uses an override from BALANCING_LUA_DIR", function()
      write_file(overrides .. "/balancing/reconcile/service.lua", DROP_UDP)
      local status, stdout = run(AGENT, { "plan", "--manifests", dir, "--node-name", "node-1", "--json" },
        { BALANCING_LUA_DIR = overrides })
      assert.equals(0, status)
      assert.is_nil(find(cjson.decode(stdout).frontends, "10.96.1.1", 53, "UDP"))
    end)

    it("logs a broken override naming the module and file, prints the rest of the plan, exit 1", function()
      write_file(overrides .. "/balancing/reconcile/service.lua", "local M = {\n")
      write_file(dir .. "/policy.yaml", [[
apiVersion: balancing.elf.io/v1beta1
kind: BalancingPolicy
metadata: {name: fixed}
spec:
  frontend: {addressMatcher: {ip: 10.200.0.1, toPorts: [{port: "80", protocol: TCP}]}}
  backend: {addressEndpoint: {addresses: [192.0.2.1], toPorts: [{port: "8080", protocol: TCP}]}}
]])
      local status, stdout, stderr = run(AGENT, { "plan", "--manifests", dir, "--node-name", "node-1", "--json",
        "--lua-dir", overrides })
      assert.equals(1, status)
      local doc = cjson.decode(stdout)
      assert.is_nil(find(doc.frontends, "10.96.1.1", 80, "TCP"))
      assert.is_table(find(doc.frontends, "10.200.0.1", 80, "TCP"))
      local logs = log_lines(stderr)
      assert.equals(1, #logs)
      assert.equals("error", logs[1].level)
      assert.equals("balancing.reconcile.service", logs[1].module)
      assert.matches(overrides:gsub("%p", "%%%0") .. "/balancing/reconcile/service%.lua", logs[1].error)
    end)

    it("logs a failing entry module (plan itself overridden and broken) as one line, exit 1", function()
      write_file(overrides .. "/balancing/plan.lua", "return { main = function() error('plan exploded') end }\n")
      local status, stdout, stderr = run(AGENT, { "plan", "--lua-dir", overrides })
      assert.equals(1, status)
      assert.equals("", stdout)
      local logs = log_lines(stderr)
      assert.equals(1, #logs)
      assert.equals("balancing.plan", logs[1].module)
      assert.matches("plan exploded", logs[1].error)
      assert.matches("stack traceback", logs[1].traceback)
    end)

    it("hosts Lua with the override dir first, balancing.core preloaded and the header found", function()
      write_file(overrides .. "/balancing/plan.lua", [[
return { main = function()
  local core = require("balancing.core")
  local host = require("balancing.host")
  local abi = require("balancing.abi")
  io.write(type(core.load), "\n", host.override_dir, "\n", package.path, "\n", abi.header_path, "\n")
  return 0
end }
]])
      local status, stdout = run(AGENT, { "plan", "--lua-dir", overrides .. "/" })
      assert.equals(0, status)
      local lines = lines_of(stdout)
      assert.equals("function", lines[1])
      assert.equals(overrides, lines[2])
      assert.equals(overrides .. "/?.lua", lines[3]:match("^[^;]+"))
      assert.is_nil(lines[3]:find(";./?.lua", 1, true))
      assert.matches("balancing%.h$", lines[4])
    end)

    it("reports an entry that returns no exit status", function()
      write_file(overrides .. "/balancing/plan.lua", "return { main = function() return 'fine' end }\n")
      local status, _, stderr = run(AGENT, { "plan", "--lua-dir", overrides })
      assert.equals(1, status)
      assert.matches("not an exit status", log_lines(stderr)[1].error)
    end)
  end)

  it("finds no modules when BALANCING_LUA_BUILTIN_DIR points elsewhere, and says which", function()
    local empty = temp_dir()
    local status, _, stderr = run(AGENT, { "plan", "--help" }, { BALANCING_LUA_BUILTIN_DIR = empty })
    remove_dir(empty)
    assert.equals(1, status)
    local logs = log_lines(stderr)
    assert.equals("balancing.plan", logs[1].module)
    assert.matches("module 'balancing.plan' not found", logs[1].error)
  end)
end)

describe("inspect", function()
  it("--help prints its usage, exit 0", function()
    local status, stdout, stderr = run(INSPECT, { "--help" })
    assert.equals(0, status)
    assert.equals("", stderr)
    assert.matches("showMapData", stdout)
    assert.matches("traceMapData", stdout)
  end)

  for _, args in ipairs({ { "frobnicate" }, { "showMapData", "everything" }, { "traceMapData", "pods" }, {},
    { "--no-such-option", "showMapData", "all" } }) do
    it("refuses '" .. table.concat(args, " ") .. "' with one line, exit 2", function()
      local status, stdout, stderr = run(INSPECT, args)
      assert.equals(2, status)
      assert.equals("", stdout)
      assert.equals(1, #lines_of(stderr))
      assert.matches("^inspect: ", stderr)
    end)
  end
end)
