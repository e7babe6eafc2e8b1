-- A translation event enriched and formatted (issue 8, CONTRACTS.md "Logs"):
-- the client pod from the process's cgroup in both kubelet layouts, the
-- Service or policy from the service ID, exactly the contract's fields.
local event = require("balancing.event")
local Store = require("balancing.store")
local abi = require("balancing.abi")
local fx = require("fixtures.policies.builders")

local UID = "3f2a1c4e-9b7d-4e21-8a6f-0123456789ab"
local CONTAINER = string.rep("0123456789abcdef", 4)

local CONTRACT_FIELDS = { "timestamp", "nodeName", "protocol", "isIpv4", "isSuccess", "failure", "destIp",
  "destPort", "natIp", "natPort", "natType", "natMode", "serviceId", "policyName", "clientPid", "clientPodName",
  "clientNamespace", "clientPodUid", "clientContainerId", "isHostApp", "redirectHitLimit" }

-- An event as core/events.c decodes it.
local function decoded(opts)
  local ev = {
    time = 1764511200.25, pid = 4242, cgroup_id = 77, service_id = 0, protocol = 17, protocol_name = "UDP",
    nat_type = abi.C.NAT_TYPE_SERVICE, nat_mode = abi.C.NAT_MODE_CLUSTER_IP, reason = abi.C.REASON_OK,
    is_ipv4 = true, success = true, redirect_hit_limit = false,
    original_address = "10.96.0.10", original_port = 53, nat_address = "10.244.1.5", nat_port = 53,
  }
  for k, v in pairs(opts or {}) do
    ev[k] = v
  end
  return ev
end

local function store_with_pod()
  local store = Store.new{ node_name = "node-1" }
  local pod = fx.pod{ namespace = "default", name = "client-7f9c", labels = { app = "client" }, node = "node-1",
    ip = "10.244.1.9" }
  pod.metadata.uid = UID
  assert(store:upsert(pod))
  assert(store:upsert(fx.service{ namespace = "kube-system", name = "kube-dns", cluster_ip = "10.96.0.10" }))
  return store
end

local function formatter(store, cgroup_text, reads)
  return event.new{ store = store, node_name = "node-1", read_cgroup = function(pid)
    if reads then
      reads[#reads + 1] = pid
    end
    return cgroup_text
  end }
end

describe("event", function()
  describe("the client's pod from its cgroup", function()
    it("reads the systemd layout (pod UID with underscores, cri-containerd scope)", function()
      local uid, container = event.cgroup_path("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        .. UID:gsub("-", "_") .. ".slice/cri-containerd-" .. CONTAINER .. ".scope")
      assert.equals(UID, uid)
      assert.equals(CONTAINER, container)
    end)

    it("reads the systemd layout of a Guaranteed pod, and docker and crio scopes", function()
      for _, scope in ipairs({ "docker-", "crio-" }) do
        local uid, container = event.cgroup_path("/kubepods.slice/kubepods-pod" .. UID:gsub("-", "_")
          .. ".slice/" .. scope .. CONTAINER .. ".scope")
        assert.equals(UID, uid)
        assert.equals(CONTAINER, container)
      end
    end)

    it("reads the cgroupfs layout", function()
      local uid, container = event.cgroup_path("/kubepods/besteffort/pod" .. UID .. "/" .. CONTAINER)
      assert.equals(UID, uid)
      assert.equals(CONTAINER, container)
    end)

    it("reads a path seen from inside a cgroup namespace", function()
      local uid = event.cgroup_path("/../../kubepods/burstable/pod" .. UID .. "/" .. CONTAINER)
      assert.equals(UID, uid)
    end)

    it("finds no pod for a host process", function()
      assert.is_nil(event.cgroup_path("/system.slice/sshd.service"))
      assert.is_nil(event.cgroup_path("/user.slice/user-0.slice/session-3.scope"))
    end)

    it("takes the cgroup v2 line of /proc/PID/cgroup, also on a hybrid host", function()
      assert.equals("/a/b", event.unified_path("0::/a/b\n"))
      assert.equals("/a/b", event.unified_path("12:pids:/x\n1:name=systemd:/y\n0::/a/b\n"))
      assert.is_nil(event.unified_path("12:pids:/x\n"))
    end)
  end)

  describe("fields", function()
    it("has exactly the contract's fields", function()
      local fields = formatter(store_with_pod(), "0::/system.slice/x.service\n"):fields(decoded())
      local names = {}
      for name in pairs(fields) do
        names[#names + 1] = name
      end
      table.sort(names)
      local expected = {}
      for i, name in ipairs(CONTRACT_FIELDS) do
        expected[i] = name
      end
      table.sort(expected)
      assert.same(expected, names)
    end)

    it("names the client pod, its namespace, UID and container for a process in a pod", function()
      local fields = formatter(store_with_pod(), "0::/kubepods/burstable/pod" .. UID .. "/" .. CONTAINER .. "\n")
        :fields(decoded())
      assert.equals("client-7f9c", fields.clientPodName)
      assert.equals("default", fields.clientNamespace)
      assert.equals(UID, fields.clientPodUid)
      assert.equals(CONTAINER, fields.clientContainerId)
      assert.is_false(fields.isHostApp)
      assert.equals(4242, fields.clientPid)
    end)

    it("says isHostApp, with empty pod fields, for a process in no pod's cgroup", function()
      local fields = formatter(store_with_pod(), "0::/system.slice/sshd.service\n"):fields(decoded())
      assert.is_true(fields.isHostApp)
      assert.equals("", fields.clientPodName)
      assert.equals("", fields.clientPodUid)
      assert.equals("", fields.clientContainerId)
    end)

    it("names the Service namespace/name or the policy name from the service ID", function()
      local store = store_with_pod()
      local _, service_id = store:service_spec("kube-system", "kube-dns")
      local fields = formatter(store, "0::/\n"):fields(decoded{ service_id = service_id })
      assert.equals("kube-system/kube-dns", fields.policyName)
      assert(store:upsert(fx.dns_redirect{ name = "node-local-dns", id = "10" }))
      fields = formatter(store, "0::/\n"):fields(decoded{ service_id = 10,
        nat_type = abi.C.NAT_TYPE_LOCAL_REDIRECT, nat_mode = abi.C.NAT_MODE_REDIRECT_ADDRESS })
      assert.equals("node-local-dns", fields.policyName)
      assert.equals("localRedirect", fields.natType)
      assert.equals("address", fields.natMode)
    end)

    it("gives a failure its reason, and the timestamp in RFC 3339 with milliseconds", function()
      local fields = formatter(store_with_pod(), "0::/\n"):fields(decoded{ success = false,
        reason = abi.C.REASON_NO_BACKEND, nat_address = "", nat_port = 0 })
      assert.is_false(fields.isSuccess)
      assert.equals("no backend", fields.failure)
      assert.equals("2025-11-30T14:00:00.250Z", fields.timestamp)
      assert.equals("UDP", fields.protocol)
    end)

    it("reads a client's cgroup once per cgroup ID, so a process gone since is still named", function()
      local reads = {}
      local f = formatter(store_with_pod(), "0::/kubepods/pod" .. UID .. "/" .. CONTAINER .. "\n", reads)
      f:fields(decoded{ pid = 1, cgroup_id = 5 })
      f.read_cgroup = function() return nil end -- the process has exited
      local fields = f:fields(decoded{ pid = 2, cgroup_id = 5 })
      assert.equals(1, #reads)
      assert.equals("client-7f9c", fields.clientPodName)
    end)

    it("line() is one JSON object: time, level, msg, then the same fields, a name with quotes escaped", function()
      local store = store_with_pod()
      local f = formatter(store, "0::/kubepods/pod" .. UID .. "/" .. CONTAINER .. "\n")
      f.node_name = 'node "1"/a'
      local ev = decoded()
      local line = f:line(ev, 1764511201.5)
      assert.is_nil(line:find("\n", 1, true))
      local doc = require("cjson").decode(line)
      assert.equals("2025-11-30T14:00:01.500Z", doc.time)
      assert.equals("info", doc.level)
      assert.equals(event.MESSAGE, doc.msg)
      doc.time, doc.level, doc.msg = nil, nil, nil
      assert.same(f:fields(ev), doc)
      assert.equals('node "1"/a', doc.nodeName)
    end)

    it("names the cgroup of a process gone before its event was read by the cgroup ID, when it can", function()
      local f = event.new{ store = store_with_pod(), node_name = "node-1", read_cgroup = function() return nil end,
        cgroup_path = function(id)
          return id == 77 and "/kubepods/pod" .. UID .. "/" .. CONTAINER or nil
        end }
      assert.equals("client-7f9c", f:fields(decoded()).clientPodName)
      assert.equals("", f:fields(decoded{ cgroup_id = 78 }).clientPodUid)
    end)

    it("leaves the pod fields empty, without claiming a host process, when the cgroup cannot be told", function()
      local fields = formatter(store_with_pod(), nil):fields(decoded())
      assert.is_false(fields.isHostApp)
      assert.equals("", fields.clientPodUid)
    end)
  end)
end)
