-- A generated cluster for scripts/bench/agent, with objects as a real API
-- server serves them: every object carries what kube-apiserver and its
-- controllers write besides the fields the agent reads — managedFields with
-- fieldsV1 blobs, the kubectl last-applied annotation on Services, Helm's
-- and the app's labels, uid, creationTimestamp, resourceVersion; the
-- EndpointSlices have the controller's generateName, labels, trigger-time
-- annotation and ownerReference, and endpoints with targetRef and zone.
-- Deterministic: the same counts give the same objects.
--
--   local cluster = require("agent_cluster").generate{ services = 10000, endpoints = 100000, nodes = 20 }
--   cluster.services, cluster.slices, cluster.nodes   -- the objects
--   cluster.changed_slice(i)    -- change i: a new version of one slice (one endpoint replaced by a
--                               -- new address), with the frontend and address to look for
--   require("agent_cluster").write(cluster, dir)     -- services.json, endpointslices.json, nodes.json
--
-- The mix (scripts/bench/reconcile_cluster.lua's, made more varied):
-- Services are ClusterIP, every 10th NodePort, every 50th LoadBalancer (with
-- an ingress IP), every 20th externalTrafficPolicy Local, every 7th ClientIP
-- affinity; 1 port (70 %), 2 (25 %) or 4 (5 %). Endpoints per Service follow
-- a skewed mix — about a third with 1, most under 10, a few with hundreds —
-- scaled to the requested total exactly; a Service with more than 100 gets
-- several slices of at most 100 (the EndpointSlice controller's maximum).
local cjson = require("cjson")

local M = {}

local format = string.format

local function ip(a, b, c, d)
  return format("%d.%d.%d.%d", a, b, c, d)
end

-- The n-th (0-based) address of a /8: a.(n/65536).(n/256%256).(n%256)
local function pool_address(first_octet, n)
  return ip(first_octet, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
end

-- A deterministic pseudo-random sequence (an LCG), so that the cluster is the
-- same from one run to the next.
local function lcg(seed)
  local state = seed
  return function()
    state = (state * 1103515245 + 12345) % 2147483648
    return state / 2147483648
  end
end

local function hex(rand, n)
  local out = {}
  for i = 1, n do
    out[i] = format("%x", math.floor(rand() * 16))
  end
  return table.concat(out)
end

local function uid(rand)
  return hex(rand, 8) .. "-" .. hex(rand, 4) .. "-4" .. hex(rand, 3) .. "-a" .. hex(rand, 3) .. "-" .. hex(rand, 12)
end

local SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"
local function suffix(rand)
  local out = {}
  for i = 1, 5 do
    local k = math.floor(rand() * #SUFFIX_CHARS) + 1
    out[i] = SUFFIX_CHARS:sub(k, k)
  end
  return table.concat(out)
end

local function timestamp(day, second)
  return format("2026-%02d-%02dT%02d:%02d:%02dZ", 1 + day % 10, 1 + day % 28, math.floor(second / 3600) % 24,
    math.floor(second / 60) % 60, second % 60)
end

-- cjson encodes an empty Lua table as {} (an object): what fieldsV1 needs.
local function fields_of(names)
  local out = { ["."] = {} }
  for _, name in ipairs(names) do
    out["f:" .. name] = {}
  end
  return out
end

local function node_name(i)
  return format("node-%d", i)
end

local ZONES = { "zone-a", "zone-b", "zone-c" }

local IMAGES = { "registry.k8s.io/kube-proxy", "docker.io/library/nginx", "quay.io/prometheus/node-exporter",
  "registry.k8s.io/pause", "docker.io/bitnami/redis", "ghcr.io/fluxcd/source-controller",
  "docker.io/library/postgres", "registry.k8s.io/coredns/coredns", "quay.io/jetstack/cert-manager-controller",
  "docker.io/grafana/grafana", "docker.io/library/busybox", "gcr.io/distroless/static" }

local function make_node(i, rand)
  local name = node_name(i)
  local images = {}
  for k, image in ipairs(IMAGES) do
    local digest = "sha256:" .. hex(rand, 64)
    images[k] = { names = { image .. "@" .. digest, image .. ":v1." .. (k + i) % 30 .. ".0" },
      sizeBytes = 10000000 + math.floor(rand() * 300000000) }
  end
  local conditions = {}
  for k, kind in ipairs({ "MemoryPressure", "DiskPressure", "PIDPressure", "Ready" }) do
    conditions[k] = { type = kind, status = kind == "Ready" and "True" or "False",
      lastHeartbeatTime = timestamp(5, 3600 + i), lastTransitionTime = timestamp(1, i),
      reason = kind == "Ready" and "KubeletReady" or ("KubeletHasNo" .. kind),
      message = kind == "Ready" and "kubelet is posting ready status" or ("kubelet has no " .. kind) }
  end
  return {
    apiVersion = "v1", kind = "Node",
    metadata = {
      name = name, uid = uid(rand), creationTimestamp = timestamp(1, i),
      labels = {
        ["beta.kubernetes.io/arch"] = "amd64", ["beta.kubernetes.io/os"] = "linux",
        ["kubernetes.io/arch"] = "amd64", ["kubernetes.io/hostname"] = name, ["kubernetes.io/os"] = "linux",
        ["node.kubernetes.io/instance-type"] = "m5.2xlarge",
        ["topology.kubernetes.io/region"] = "eu-west-1", ["topology.kubernetes.io/zone"] = ZONES[i % 3 + 1],
      },
      annotations = {
        ["node.alpha.kubernetes.io/ttl"] = "0",
        ["volumes.kubernetes.io/controller-managed-attach-detach"] = "true",
        ["kubeadm.alpha.kubernetes.io/cri-socket"] = "unix:///run/containerd/containerd.sock",
      },
      managedFields = {
        { manager = "kubelet", operation = "Update", apiVersion = "v1", time = timestamp(1, i),
          fieldsType = "FieldsV1", fieldsV1 = { ["f:metadata"] = { ["f:annotations"] = fields_of({
            "volumes.kubernetes.io/controller-managed-attach-detach" }), ["f:labels"] = fields_of({
            "beta.kubernetes.io/arch", "beta.kubernetes.io/os", "kubernetes.io/arch", "kubernetes.io/hostname",
            "kubernetes.io/os", "node.kubernetes.io/instance-type", "topology.kubernetes.io/region",
            "topology.kubernetes.io/zone" }) }, ["f:spec"] = { ["f:providerID"] = {} } } },
        { manager = "kube-controller-manager", operation = "Update", apiVersion = "v1", time = timestamp(1, i + 30),
          fieldsType = "FieldsV1", fieldsV1 = { ["f:metadata"] = { ["f:annotations"] = {
            ["f:node.alpha.kubernetes.io/ttl"] = {} } }, ["f:spec"] = { ["f:podCIDR"] = {}, ["f:podCIDRs"] = {
            ["."] = {}, ['v:"10.244.' .. i .. '.0/24"'] = {} } } } },
        { manager = "kubelet", operation = "Update", apiVersion = "v1", time = timestamp(5, 3600 + i),
          subresource = "status", fieldsType = "FieldsV1", fieldsV1 = { ["f:status"] = {
            ["f:conditions"] = { ['k:{"type":"Ready"}'] = fields_of({ "lastHeartbeatTime", "lastTransitionTime",
              "message", "reason", "status" }) }, ["f:images"] = {}, ["f:nodeInfo"] = fields_of({ "bootID" }) } } },
      },
    },
    spec = { podCIDR = format("10.244.%d.0/24", i), podCIDRs = { format("10.244.%d.0/24", i) },
      providerID = format("aws:///eu-west-1a/i-%s", hex(rand, 17)) },
    status = {
      addresses = {
        { type = "InternalIP", address = ip(192, 168, math.floor(i / 256), i % 256) },
        { type = "Hostname", address = name },
        { type = "InternalDNS", address = format("ip-192-168-%d-%d.eu-west-1.compute.internal", math.floor(i / 256),
          i % 256) },
      },
      capacity = { cpu = "8", ["ephemeral-storage"] = "104845292Ki", memory = "32386544Ki", pods = "110" },
      allocatable = { cpu = "7910m", ["ephemeral-storage"] = "95551679124", memory = "31369712Ki", pods = "110" },
      conditions = conditions,
      daemonEndpoints = { kubeletEndpoint = { Port = 10250 } },
      images = images,
      nodeInfo = { architecture = "amd64", bootID = uid(rand), containerRuntimeVersion = "containerd://1.7.22",
        kernelVersion = "6.1.112-124.190.amzn2023.x86_64", kubeProxyVersion = "v1.28.15",
        kubeletVersion = "v1.28.15", machineID = hex(rand, 32), operatingSystem = "linux",
        osImage = "Amazon Linux 2023.6.20241031", systemUUID = uid(rand) },
    },
  }
end

local PORT_SETS = {
  { { name = "http", port = 80, protocol = "TCP", targetPort = "http" } },
  { { name = "http", port = 80, protocol = "TCP", targetPort = "http" },
    { name = "metrics", port = 9090, protocol = "TCP", targetPort = 9090 } },
  { { name = "http", port = 80, protocol = "TCP", targetPort = "http" },
    { name = "https", port = 443, protocol = "TCP", targetPort = 8443 },
    { name = "grpc", port = 9000, protocol = "TCP", targetPort = 9000 },
    { name = "dns", port = 53, protocol = "UDP", targetPort = 5353 } },
}
-- the container ports the slices list (the targetPorts resolved)
local SLICE_PORTS = { http = 8080, metrics = 9090, https = 8443, grpc = 9000, dns = 5353 }

-- fieldsV1 of a Service's spec as kubectl apply writes it
local function spec_fields(spec)
  local ports = { ["."] = {} }
  for _, port in ipairs(spec.ports) do
    ports[format('k:{"port":%d,"protocol":"%s"}', port.port, port.protocol)] = fields_of({ "name", "port",
      "protocol", "targetPort" })
  end
  local fields = { ["f:ports"] = ports, ["f:selector"] = {}, ["f:type"] = {}, ["f:sessionAffinity"] = {} }
  if spec.externalTrafficPolicy then
    fields["f:externalTrafficPolicy"] = {}
  end
  return fields
end

local function make_service(i, rand)
  local namespace = format("team-%d", i % 100)
  local app = format("app-%d", i)
  local ports = {}
  local set = (i % 20 == 0) and PORT_SETS[3] or (i % 4 == 1) and PORT_SETS[2] or PORT_SETS[1]
  for k, port in ipairs(set) do
    ports[k] = { name = port.name, port = port.port, protocol = port.protocol, targetPort = port.targetPort }
  end
  local spec = {
    type = "ClusterIP",
    clusterIP = pool_address(10, 0x600000 + i), -- 10.96.x.y
    ports = ports,
    selector = { ["app.kubernetes.io/name"] = app, ["app.kubernetes.io/instance"] = app .. "-prod" },
    sessionAffinity = i % 7 == 0 and "ClientIP" or "None",
    ipFamilies = { "IPv4" }, ipFamilyPolicy = "SingleStack", internalTrafficPolicy = "Cluster",
  }
  spec.clusterIPs = { spec.clusterIP }
  if i % 7 == 0 then
    spec.sessionAffinityConfig = { clientIP = { timeoutSeconds = 10800 } }
  end
  local status = { loadBalancer = {} }
  if i % 10 == 0 or i % 50 == 25 then
    spec.type = i % 50 == 25 and "LoadBalancer" or "NodePort"
    for k, port in ipairs(ports) do
      port.nodePort = 30000 + (i * 4 + k) % 2768
    end
    spec.externalTrafficPolicy = (i % 20 == 0) and "Local" or "Cluster"
    if spec.type == "LoadBalancer" then
      spec.allocateLoadBalancerNodePorts = true
      status.loadBalancer.ingress = { { ip = pool_address(100, 0x100000 + i) } }
    end
  end
  local labels = {
    ["app.kubernetes.io/name"] = app, ["app.kubernetes.io/instance"] = app .. "-prod",
    ["app.kubernetes.io/managed-by"] = "Helm", ["app.kubernetes.io/part-of"] = format("system-%d", i % 40),
    ["app.kubernetes.io/version"] = format("1.%d.%d", i % 17, i % 5), ["helm.sh/chart"] = format("app-%d.4.2", i % 9),
  }
  local name = format("svc-%d", i)
  -- what kubectl apply was given, as it records it
  local applied = cjson.encode({ apiVersion = "v1", kind = "Service",
    metadata = { annotations = {}, labels = labels, name = name, namespace = namespace },
    spec = { ports = set, selector = spec.selector, type = spec.type,
      externalTrafficPolicy = spec.externalTrafficPolicy, sessionAffinity = spec.sessionAffinity } }) .. "\n"
  local created = timestamp(i % 300, i % 86400)
  local managed = {
    { manager = "kubectl-client-side-apply", operation = "Update", apiVersion = "v1", time = created,
      fieldsType = "FieldsV1", fieldsV1 = { ["f:metadata"] = {
        ["f:annotations"] = fields_of({ "kubectl.kubernetes.io/last-applied-configuration" }),
        ["f:labels"] = fields_of({ "app.kubernetes.io/instance", "app.kubernetes.io/managed-by",
          "app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/version", "helm.sh/chart" }) },
        ["f:spec"] = spec_fields(spec) } },
  }
  if spec.type == "LoadBalancer" then
    managed[2] = { manager = "cloud-controller-manager", operation = "Update", apiVersion = "v1",
      time = timestamp(i % 300, i % 86400 + 40), subresource = "status", fieldsType = "FieldsV1",
      fieldsV1 = { ["f:status"] = { ["f:loadBalancer"] = { ["f:ingress"] = {} } } } }
  end
  return {
    apiVersion = "v1", kind = "Service",
    metadata = {
      name = name, namespace = namespace, uid = uid(rand), creationTimestamp = created,
      labels = labels,
      annotations = {
        ["kubectl.kubernetes.io/last-applied-configuration"] = applied,
        ["meta.helm.sh/release-name"] = app .. "-prod", ["meta.helm.sh/release-namespace"] = namespace,
      },
      managedFields = managed,
    },
    spec = spec,
    status = status,
  }
end

-- Endpoints per Service: a skewed mix (many with one or a few, a long tail
-- up to hundreds), scaled so that the total is exactly `total`.
local function endpoint_counts(services, total, rand)
  local weights, sum = {}, 0
  for i = 1, services do
    local r = rand()
    local w
    if r < 0.33 then
      w = 1
    elseif r < 0.60 then
      w = 2 + math.floor(rand() * 2)
    elseif r < 0.82 then
      w = 4 + math.floor(rand() * 6)
    elseif r < 0.95 then
      w = 10 + math.floor(rand() * 21)
    elseif r < 0.99 then
      w = 31 + math.floor(rand() * 70)
    else
      w = 101 + math.floor(rand() * 400)
    end
    weights[i] = w
    sum = sum + w
  end
  local counts, assigned = {}, 0
  for i = 1, services do
    counts[i] = math.max(1, math.floor(weights[i] * total / sum))
    assigned = assigned + counts[i]
  end
  -- the remainder (or excess) one at a time over the Services, largest first
  local i = 0
  while assigned ~= total do
    i = i % services + 1
    if assigned < total then
      counts[i] = counts[i] + 1
      assigned = assigned + 1
    elseif counts[i] > 1 then
      counts[i] = counts[i] - 1
      assigned = assigned - 1
    end
  end
  return counts
end

local SLICE_MAX = 100

local function make_endpoint(address, nodes, n, namespace, app, rand)
  local node = (n * 7919) % nodes + 1
  local pod = format("%s-%s-%s", app, hex(rand, 10), suffix(rand))
  return {
    addresses = { address },
    conditions = { ready = true, serving = true, terminating = false },
    nodeName = node_name(node),
    targetRef = { kind = "Pod", namespace = namespace, name = pod, uid = uid(rand) },
    zone = ZONES[node % 3 + 1],
  }
end

local function make_slices(service, count, first_endpoint, nodes, rand)
  local meta = service.metadata
  local ports = {}
  for k, port in ipairs(service.spec.ports) do
    ports[k] = { name = port.name, port = SLICE_PORTS[port.name], protocol = port.protocol }
  end
  local slices = {}
  local n = first_endpoint
  local remaining = count
  repeat
    local size = math.min(remaining, SLICE_MAX)
    local endpoints = {}
    for e = 1, size do
      endpoints[e] = make_endpoint(pool_address(11, n), nodes, n, meta.namespace,
        meta.labels["app.kubernetes.io/name"], rand)
      n = n + 1
    end
    remaining = remaining - size
    local labels = { ["kubernetes.io/service-name"] = meta.name,
      ["endpointslice.kubernetes.io/managed-by"] = "endpointslice-controller.k8s.io" }
    for key, value in pairs(meta.labels) do
      labels[key] = value
    end
    local label_fields = { "endpointslice.kubernetes.io/managed-by", "kubernetes.io/service-name" }
    for key in pairs(meta.labels) do
      label_fields[#label_fields + 1] = key
    end
    local changed = timestamp(meta.uid:byte(1) % 300, #slices * 60 + first_endpoint % 86400)
    slices[#slices + 1] = {
      apiVersion = "discovery.k8s.io/v1", kind = "EndpointSlice",
      metadata = {
        name = meta.name .. "-" .. suffix(rand), generateName = meta.name .. "-", namespace = meta.namespace,
        uid = uid(rand), creationTimestamp = meta.creationTimestamp, generation = 1 + math.floor(rand() * 40),
        labels = labels,
        annotations = { ["endpoints.kubernetes.io/last-change-trigger-time"] = changed },
        ownerReferences = { { apiVersion = "v1", kind = "Service", name = meta.name, uid = meta.uid,
          controller = true, blockOwnerDeletion = true } },
        managedFields = { { manager = "kube-controller-manager", operation = "Update",
          apiVersion = "discovery.k8s.io/v1", time = changed, fieldsType = "FieldsV1", fieldsV1 = {
            ["f:addressType"] = {}, ["f:endpoints"] = {}, ["f:ports"] = {},
            ["f:metadata"] = {
              ["f:annotations"] = fields_of({ "endpoints.kubernetes.io/last-change-trigger-time" }),
              ["f:generateName"] = {}, ["f:labels"] = fields_of(label_fields),
              ["f:ownerReferences"] = { ["."] = {}, [format('k:{"uid":"%s"}', meta.uid)] = {} } } } } },
      },
      addressType = "IPv4",
      endpoints = endpoints,
      ports = ports,
    }
  until remaining == 0
  return slices
end

-- generate{ services, endpoints, nodes } → cluster
function M.generate(opts)
  local counts = { services = opts.services or 10000, endpoints = opts.endpoints or 100000, nodes = opts.nodes or 20 }
  assert(counts.endpoints >= counts.services, "at least one endpoint per Service")
  local rand = lcg(20261130)
  local nodes, services, slices = {}, {}, {}
  for i = 1, counts.nodes do
    nodes[i] = make_node(i, rand)
  end
  local per_service = endpoint_counts(counts.services, counts.endpoints, rand)
  local first = 0
  local slice_service = {}
  for i = 1, counts.services do
    local service = make_service(i, rand)
    services[i] = service
    for _, slice in ipairs(make_slices(service, per_service[i], first, counts.nodes, rand)) do
      slices[#slices + 1] = slice
      slice_service[#slices] = service
    end
    first = first + per_service[i]
  end
  counts.slices = #slices
  local cluster = { counts = counts, nodes = nodes, services = services, slices = slices,
    endpoints_per_service = per_service }

  -- Change i (1-based): the slice at a stride through the list gets one
  -- endpoint's address replaced by 100.64.x.y (unique to i), as a pod
  -- replaced by a rollout; the trigger-time annotation and managedFields'
  -- time move, as the controller writes them. Returns the new slice (a copy:
  -- the cluster's own stays as listed), the frontend to look at (the
  -- Service's first port on its ClusterIP) and the new address and port.
  local current = {}
  function cluster.changed_slice(i)
    local index = ((i - 1) * 7919) % #slices + 1
    local slice = current[index] or slices[index]
    local copy = cjson.decode(cjson.encode(slice))
    local k = (i % #copy.endpoints) + 1
    local address = pool_address(100, 0x400000 + i) -- 100.64.0.0/10
    local endpoint = copy.endpoints[k]
    endpoint.addresses = { address }
    endpoint.targetRef.name = endpoint.targetRef.name:sub(1, -6) .. suffix(rand)
    endpoint.targetRef.uid = uid(rand)
    local changed = timestamp(9, i % 86400)
    copy.metadata.annotations["endpoints.kubernetes.io/last-change-trigger-time"] = changed
    copy.metadata.managedFields[1].time = changed
    copy.metadata.resourceVersion = nil
    current[index] = copy
    local service = slice_service[index]
    local port = service.spec.ports[1]
    return copy, { address = service.spec.clusterIP, port = port.port, protocol = port.protocol,
      backend_address = address, backend_port = SLICE_PORTS[port.name], service = service.metadata.namespace .. "/"
        .. service.metadata.name, slice_endpoints = #copy.endpoints }
  end
  return cluster
end

local function write_list(path, kind, api_version, items)
  local file = assert(io.open(path, "wb"))
  file:write('{"apiVersion":"', api_version, '","kind":"', kind, 'List","metadata":{},"items":[')
  for i, item in ipairs(items) do
    if i > 1 then
      file:write(",\n")
    end
    file:write(cjson.encode(item))
  end
  file:write("]}\n")
  file:close()
end

-- Writes the cluster as three List files; returns the bytes per kind.
function M.write(cluster, dir)
  write_list(dir .. "/nodes.json", "Node", "v1", cluster.nodes)
  write_list(dir .. "/services.json", "Service", "v1", cluster.services)
  write_list(dir .. "/endpointslices.json", "EndpointSlice", "discovery.k8s.io/v1", cluster.slices)
  local sizes = {}
  for _, name in ipairs({ "nodes", "services", "endpointslices" }) do
    local file = assert(io.open(dir .. "/" .. name .. ".json", "rb"))
    sizes[name] = file:seek("end")
    file:close()
  end
  return sizes
end

return M
