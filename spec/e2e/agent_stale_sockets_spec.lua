-- Stale UDP sockets with the real agent (--manifests): an EndpointSlice
-- edited to drop one endpoint of a UDP Service makes the agent destroy the
-- connected sockets it translated to that endpoint, so their client opens a
-- new socket that reaches the endpoint left; the client of the endpoint
-- that stays keeps its socket (docs/datapath.md, "Stale sockets").
local agent_run = require("helpers.agent_run")
local cjson = require("cjson")
local core_env = require("helpers.core_env")
local scratch = require("helpers.scratch")

local eventually = agent_run.eventually
local FIXTURES = "spec/fixtures/kernel"
local VIP, PORT = "127.10.8.53", 53
local ECONNABORTED = 103
-- clients started until one has landed on each of two backends (each 1/2)
local CLIENT_ATTEMPTS = 24
local CLIENT_SECONDS = 30

-- A UDP Service on VIP:53 and its EndpointSlice: the addresses given, all on
-- backend_port.
local function dns_yaml(backend_port, addresses)
  return table.concat({
    "apiVersion: v1", "kind: Service",
    "metadata: {name: dns, namespace: stale, uid: dns-uid}",
    "spec: {clusterIP: " .. VIP .. ", ports: [{name: dns, port: " .. PORT .. ", protocol: UDP, targetPort: "
      .. backend_port .. "}]}",
    "---",
    "apiVersion: discovery.k8s.io/v1", "kind: EndpointSlice",
    "metadata: {name: dns-1, namespace: stale, labels: {kubernetes.io/service-name: dns}}",
    "addressType: IPv4",
    "ports: [{name: dns, port: " .. backend_port .. ", protocol: UDP}]",
    "endpoints: [{addresses: [" .. table.concat(addresses, "]}, {addresses: [") .. "]}]", "" }, "\n")
end

describe("balancing-agent: stale UDP sockets", function()
  local dir, env
  after_each(function()
    agent_run.teardown(dir)
    dir = nil
  end)

  -- A connected client (client.py udp-connected-pause) in the agent's cgroup,
  -- paused after its first exchange: { first = result, release = function
  -- that ends its pause and returns its results }.
  local function paused_client(cgroup, n)
    local pause_file = dir .. "/pause-" .. n
    local pipe = assert(io.popen(string.format("exec timeout -k 1 %d sh -c %s 2>&1", CLIENT_SECONDS,
      scratch.quote(string.format("echo $$ > %s && unset LD_PRELOAD && exec python3 %s/client.py "
        .. "udp-connected-pause %s %d 1 --pause-file %s", scratch.quote(cgroup .. "/cgroup.procs"), FIXTURES, VIP, PORT,
        scratch.quote(pause_file))))))
    local line = pipe:read("*l")
    local ok, first = pcall(cjson.decode, line or "")
    if not (ok and type(first) == "table" and not first.results) then
      error("client failed: " .. tostring(line) .. (pipe:read("*a") or "")) -- (read only then: it waits for the end)
    end
    return { first = first, release = function()
      scratch.write_file(pause_file, "")
      local rest = pipe:read("*a")
      pipe:close()
      local decoded, run = pcall(cjson.decode, rest)
      assert(decoded and type(run) == "table", "client failed after its pause: " .. rest)
      return run.results
    end }
  end

  it("aborts the connected socket of the endpoint removed, and keeps the other endpoint's", function()
    env = core_env.open(pending)
    if not env then
      return
    end
    dir = scratch.temp_dir()
    local info = agent_run.spawn_json("python3 " .. FIXTURES .. "/servers.py udp 127.0.0.1", "servers.py")
    local port = tonumber(info.backends[1]:match(":(%d+)$"))
    local removed = info.backends[1]
    local staying = agent_run.spawn_json(string.format("python3 %s/servers.py udp 127.0.0.2:%d", FIXTURES, port),
      "servers.py").backends[1]
    scratch.write_file(dir .. "/manifests/dns.yaml", dns_yaml(port, { "127.0.0.1", "127.0.0.2" }))
    local agent = agent_run.start({ manifests = dir .. "/manifests", cgroup = env:cgroup(), bpffs = env:pin_dir(),
      log = dir .. "/agent.log", ready_seconds = 10 })

    -- one paused client on each backend
    local on = {}
    for n = 1, CLIENT_ATTEMPTS do
      local client = paused_client(agent.cgroup, n)
      if on[client.first.backend] then
        client.release()
      else
        on[client.first.backend] = client
      end
      if on[removed] and on[staying] then
        break
      end
    end
    assert(on[removed] and on[staying], "no client landed on each backend in " .. CLIENT_ATTEMPTS .. " attempts")

    -- the editor's rename-replace of the EndpointSlice, without 127.0.0.1
    scratch.write_file(dir .. "/manifests/dns.yaml.tmp", dns_yaml(port, { "127.0.0.2" }))
    os.rename(dir .. "/manifests/dns.yaml.tmp", dir .. "/manifests/dns.yaml")
    local destroyed = eventually(5, function()
      local value = agent:metric("balancing_stale_sockets_destroyed_total")
      return value and value >= 1 and value
    end)
    local aborted, kept = on[removed].release(), on[staying].release()

    assert.equals(ECONNABORTED, aborted[2].so_error)
    assert.same({ backend = staying, source = VIP .. ":" .. PORT }, aborted[3])
    assert.same({ backend = staying, source = VIP .. ":" .. PORT }, kept[2])
    assert.equals(1, destroyed)
    assert.equals(1, #agent_run.log_lines(agent.log, "stale UDP sockets destroyed"))
    assert.is_nil(agent_run.sanitizer_report(agent.log))
  end)
end)
