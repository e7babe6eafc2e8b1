-- The capabilities deploy/daemonset.yaml gives the agent container are enough,
-- and each one is needed: the real agent runs with exactly that bounding set
-- (setpriv, as root, so nothing else changes) on a test cgroup and a pin
-- directory of its own, serves a client through a VIP, and without any one of
-- them it does not get ready. (Run here as root in the host's namespaces: the
-- container's other differences — no_new_privs, its own mount view — are not
-- reproduced.)
local agent_run = require("helpers.agent_run")
local core_env = require("helpers.core_env")
local lyaml = require("lyaml")
local scratch = require("helpers.scratch")

local eventually = agent_run.eventually
local VIP = "127.10.0.91"

local function daemonset_capabilities()
  for _, doc in ipairs(lyaml.load(assert(scratch.read_file("deploy/daemonset.yaml")), { all = true })) do
    if doc.kind == "DaemonSet" then
      for _, container in ipairs(doc.spec.template.spec.containers) do
        if container.name == "agent" then
          return container.securityContext.capabilities
        end
      end
    end
  end
  error("deploy/daemonset.yaml has no agent container")
end

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

-- setpriv words keeping only these capabilities (names as the DaemonSet spells them)
local function bounding(caps)
  local words = { "-all" }
  for _, cap in ipairs(caps) do
    words[#words + 1] = "+" .. cap:lower()
  end
  return "setpriv --bounding-set=" .. table.concat(words, ",") .. " --inh-caps=-all "
end

describe("the DaemonSet's capabilities", function()
  local env, dir
  after_each(function()
    agent_run.teardown(dir)
    dir = nil
  end)

  local function prepare()
    env = core_env.open(pending)
    if not env then
      return nil
    end
    dir = scratch.temp_dir()
    local info = agent_run.spawn_json("python3 spec/fixtures/kernel/servers.py tcp 127.0.0.1", "servers.py")
    scratch.write_file(dir .. "/manifests/web.yaml", service_yaml(info.backends[1]:match(":(%d+)$")))
    return info.backends[1]
  end

  it("drops every capability and adds only BPF, NET_ADMIN and PERFMON", function()
    local caps = daemonset_capabilities()
    assert.same({ "ALL" }, caps.drop)
    assert.same({ "BPF", "NET_ADMIN", "PERFMON" }, caps.add)
  end)

  it("are enough: the agent gets ready and a client reaches the backend through the VIP", function()
    local backend = prepare()
    if not backend then
      return
    end
    local agent = agent_run.start({ manifests = dir .. "/manifests", cgroup = env:cgroup(), bpffs = env:pin_dir(),
      log = dir .. "/agent.log", ready_seconds = 15, wrapper = bounding(daemonset_capabilities().add) })
    -- the wrapper really took the others away
    local status = scratch.read_file("/proc/" .. agent.pid .. "/status")
    local bnd = tonumber(status:match("CapBnd:%s*(%x+)"), 16)
    -- CAP_NET_ADMIN 12, CAP_SYS_ADMIN 21, CAP_PERFMON 38, CAP_BPF 39
    assert.equals(2 ^ 12 + 2 ^ 38 + 2 ^ 39, bnd)
    assert.equals(backend, eventually(5, function() return agent_run.connect_once(agent.cgroup, VIP) end))
  end)

  for _, missing in ipairs({ "BPF", "NET_ADMIN", "PERFMON" }) do
    it("are each needed: without " .. missing .. " the agent does not get ready", function()
      if not prepare() then
        return
      end
      local caps = {}
      for _, cap in ipairs(daemonset_capabilities().add) do
        if cap ~= missing then
          caps[#caps + 1] = cap
        end
      end
      local ok = pcall(agent_run.start, { manifests = dir .. "/manifests", cgroup = env:cgroup(),
        bpffs = env:pin_dir(), log = dir .. "/agent.log", ready_seconds = 10, wrapper = bounding(caps) })
      assert.is_false(ok, "ready without " .. missing)
      -- BPF and NET_ADMIN: the kernel check names the program type it cannot load; PERFMON:
      -- the verifier refuses the programs' bpf_printk
      local log = scratch.read_file(dir .. "/agent.log") or ""
      assert.truthy(log:find('"msg":"agent cannot start"', 1, true) or log:find("BPF program load failed", 1, true),
        log)
    end)
  end
end)

-- The init container's script, run by sh in a private mount namespace whose
-- /sys/fs/bpf and /run are empty tmpfs (nothing reaches the host's mounts):
-- it mounts bpffs and cgroup2 where they are missing, and run again (a pod
-- restart) mounts nothing more. The script enters PID 1's cgroup namespace (the
-- host's, under hostPID); here it enters the spec's own, which is the host's
-- (this machine's PID 1 may not be opened), so the text is changed in that one place.
describe("the DaemonSet's init container", function()
  local function init_script()
    for _, doc in ipairs(lyaml.load(assert(scratch.read_file("deploy/daemonset.yaml")), { all = true })) do
      if doc.kind == "DaemonSet" then
        local command = doc.spec.template.spec.initContainers[1].command
        return command[#command]
      end
    end
  end

  it("mounts bpffs on /sys/fs/bpf and the host's cgroup2 on /run/balancing/cgroupv2, once", function()
    local status = scratch.run("id -u")
    local _, uid = scratch.run("id -u")
    if status ~= 0 or not uid:match("^0%s*$") then
      pending("needs root for a mount namespace")
      return
    end
    local dir = scratch.temp_dir()
    local script = init_script()
    local own, replaced = script:gsub("/proc/1/ns/cgroup", "/proc/self/ns/cgroup")
    assert.equals(1, replaced)
    scratch.write_file(dir .. "/init.sh", own)
    local inner = "mount -t tmpfs balancing-test /sys/fs/bpf && mount -t tmpfs balancing-test /run"
      .. " && sh -e " .. scratch.quote(dir .. "/init.sh") .. " && sh -e " .. scratch.quote(dir .. "/init.sh")
      .. " && cat /proc/self/mountinfo"
    local code, mountinfo, stderr = scratch.run("unshare --mount --propagation private sh -c " .. scratch.quote(inner))
    scratch.remove_dir(dir)
    assert.equals(0, code, stderr)
    -- the mounts on top of our tmpfs (mountinfo also lists the host's, hidden beneath)
    local ours, found = {}, {}
    for line in mountinfo:gmatch("[^\n]+") do
      local id, parent, point, fstype, source = line:match("^(%d+) (%d+) %S+ %S+ (%S+) .- %- (%S+) (%S+)")
      if source == "balancing-test" then
        ours[id] = true
      elseif ours[parent] and (point == "/sys/fs/bpf" or point == "/run/balancing/cgroupv2") then
        ours[id] = true
        found[point .. " " .. fstype] = (found[point .. " " .. fstype] or 0) + 1
      end
    end
    assert.same({ ["/sys/fs/bpf bpf"] = 1, ["/run/balancing/cgroupv2 cgroup2"] = 1 }, found)
  end)
end)
