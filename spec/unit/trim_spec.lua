-- Objects trimmed to what the agent reads before they enter the store
-- (issue 7: "decoded once and trimmed … as client-go's transform functions
-- do"): what is dropped is never read, so a trimmed cluster plans the same.
local cjson = require("cjson")
local trim = require("balancing.trim")
local manifests = require("balancing.manifests")
local Store = require("balancing.store")
local reconciler = require("balancing.reconciler")
local frontends = require("balancing.frontends")

-- A deep copy, so that the untrimmed object survives trimming its twin.
local function copy(value)
  if type(value) ~= "table" then
    return value
  end
  local out = {}
  for k, v in pairs(value) do
    out[copy(k)] = copy(v)
  end
  return setmetatable(out, getmetatable(value))
end

-- The JSON plan document of a set of objects for one node.
local function plan_of(objects, node_name)
  local store = Store.new{ node_name = node_name }
  for _, obj in ipairs(objects) do
    store:upsert(obj)
  end
  local driver = reconciler.new{ store = store, node_name = node_name }
  local round = driver:run(store:owners())
  assert.same({}, round.failures)
  local view = frontends.from_entries(driver:all_entries(), store.ids)
  return frontends.encode(frontends.document(view, frontends.normalize_rejected(driver:all_rejections())))
end

-- A Pod as the API server sends it: managedFields, the last-applied
-- annotation, a container spec with env and mounts, full statuses.
local function real_pod()
  local managed = {}
  for i = 1, 4 do
    managed[i] = { manager = "kubelet", operation = "Update", apiVersion = "v1", time = "2026-11-30T10:00:00Z",
      fieldsType = "FieldsV1", fieldsV1 = { ["f:status"] = { ["f:conditions"] = { [".".. i] = {} },
        ["f:containerStatuses"] = {}, ["f:podIP"] = {}, ["f:podIPs"] = {} } } }
  end
  local env = {}
  for i = 1, 30 do
    env[i] = { name = "SETTING_" .. i, value = string.rep("x", 40) }
  end
  return {
    apiVersion = "v1", kind = "Pod",
    metadata = {
      name = "web-7d4b9", namespace = "default", uid = "pod-uid-1", resourceVersion = "12345",
      labels = { app = "web" },
      annotations = { [trim.LAST_APPLIED_ANNOTATION] = string.rep("{}", 500), keep = "me" },
      managedFields = managed,
      ownerReferences = { { kind = "ReplicaSet", name = "web-7d4b9", uid = "rs-uid" } },
    },
    spec = {
      nodeName = "node-1", hostNetwork = false, serviceAccountName = "web",
      containers = { { name = "web", image = "registry.example/web:1.2.3", env = env,
        volumeMounts = { { name = "token", mountPath = "/var/run/secrets" } },
        resources = { limits = { cpu = "1", memory = "512Mi" } } } },
      volumes = { { name = "token", projected = { sources = { { serviceAccountToken = { path = "token" } } } } } },
    },
    status = {
      phase = "Running", podIP = "10.244.1.20", podIPs = { { ip = "10.244.1.20" } },
      conditions = { { type = "Ready", status = "True" }, { type = "Initialized", status = "True" } },
      containerStatuses = { { name = "web", containerID = "containerd://" .. string.rep("a", 64),
        image = "registry.example/web:1.2.3", imageID = "sha256:" .. string.rep("b", 64), ready = true,
        restartCount = 0, state = { running = { startedAt = "2026-11-30T10:00:00Z" } } } },
      qosClass = "Burstable", startTime = "2026-11-30T10:00:00Z",
    },
  }
end

describe("trim", function()
  it("drops managedFields, the last-applied annotation, ownerReferences and finalizers", function()
    local pod = trim.object(real_pod())
    assert.is_nil(pod.metadata.managedFields)
    assert.is_nil(pod.metadata.ownerReferences)
    assert.is_nil(pod.metadata.annotations[trim.LAST_APPLIED_ANNOTATION])
    assert.equals("me", pod.metadata.annotations.keep)
    assert.same({ app = "web" }, pod.metadata.labels)
    assert.equals("12345", pod.metadata.resourceVersion)
    assert.equals("pod-uid-1", pod.metadata.uid)
  end)

  it("keeps of a Pod its node, phase, conditions, IPs and container IDs, and drops its containers", function()
    local pod = trim.object(real_pod())
    assert.same({ nodeName = "node-1", hostNetwork = false }, pod.spec)
    assert.equals("Running", pod.status.phase)
    assert.equals("10.244.1.20", pod.status.podIP)
    assert.same({ { name = "web", containerID = "containerd://" .. string.rep("a", 64) } },
      pod.status.containerStatuses)
    assert.is_nil(pod.status.qosClass)
  end)

  it("makes a real Pod many times smaller", function()
    local before = #cjson.encode(real_pod())
    local after = #cjson.encode(trim.object(real_pod()))
    assert.is_true(after * 5 < before, string.format("%d bytes before, %d after", before, after))
  end)

  it("keeps of a Node its addresses only, of its status", function()
    local node = trim.object({ kind = "Node", metadata = { name = "node-1", labels = { a = "b" } },
      spec = { podCIDR = "10.244.1.0/24" },
      status = { addresses = { { type = "InternalIP", address = "192.168.0.1" } },
        images = { { names = { "x" }, sizeBytes = 1 } }, nodeInfo = { kubeletVersion = "v1.31" } } })
    assert.same({ addresses = { { type = "InternalIP", address = "192.168.0.1" } } }, node.status)
    assert.is_nil(node.spec)
    assert.same({ a = "b" }, node.metadata.labels)
  end)

  it("keeps an endpoint's addresses, conditions, node, zone and hints in a table of their own, "
    .. "one conditions table per combination", function()
    local slice = trim.object({ kind = "EndpointSlice", metadata = { name = "s", namespace = "n" },
      endpoints = {
        { addresses = { "10.0.0.1" }, conditions = { ready = true, serving = true, terminating = false },
          nodeName = "node-1", zone = "a", targetRef = { kind = "Pod", name = "p1" } },
        { addresses = { "10.0.0.2" }, conditions = { ready = true, serving = true, terminating = false },
          nodeName = "node-2", hints = { forZones = { { name = "a" } } } },
        { addresses = { "10.0.0.3" }, conditions = { ready = false, serving = true, terminating = true } },
        { addresses = { "10.0.0.4" }, conditions = { ready = cjson.null, serving = true } },
      } })
    local e = slice.endpoints
    assert.same({ addresses = { "10.0.0.1" }, conditions = { ready = true, serving = true, terminating = false },
      nodeName = "node-1", zone = "a" }, e[1])
    assert.same({ forZones = { { name = "a" } } }, e[2].hints)
    assert.equals(e[1].conditions, e[2].conditions) -- the same table: one per combination
    assert.are_not.equal(e[1].conditions, e[3].conditions)
    assert.same({ ready = false, serving = true, terminating = true }, e[3].conditions)
    assert.equals(cjson.null, e[4].conditions.ready) -- a null is kept as it came, in its own table
  end)

  it("returns an object of another kind as it is", function()
    local deployment = { kind = "Deployment", metadata = { name = "x", managedFields = { {} } }, spec = { a = 1 } }
    assert.equals(deployment, trim.object(deployment))
    assert.same({ {} }, deployment.metadata.managedFields)
  end)

  it("drops nothing reconciliation reads: examples/cluster plans byte for byte the same trimmed", function()
    local objects = assert(manifests.read_dir("examples/cluster/manifests"))
    local trimmed = {}
    for i, obj in ipairs(objects) do
      trimmed[i] = trim.object(copy(obj))
    end
    for _, node_name in ipairs({ "node-1", "node-2" }) do
      assert.equals(plan_of(objects, node_name), plan_of(trimmed, node_name))
    end
  end)

  it("drops nothing reconciliation reads: the benchmark cluster plans the same trimmed", function()
    package.path = "scripts/bench/?.lua;" .. package.path
    local cluster = require("reconcile_cluster").generate{ services = 300, endpoints = 10, nodes = 20,
      pods = 200, policies = 20 }
    local trimmed = {}
    for i, obj in ipairs(cluster.objects) do
      trimmed[i] = trim.object(copy(obj))
    end
    assert.equals(plan_of(cluster.objects, "node-1"), plan_of(trimmed, "node-1"))
  end)
end)
