-- A generated cluster for scripts/bench/reconcile, shaped like a large real
-- one: Services with two ports (HTTP over TCP, DNS-like over UDP) and one
-- EndpointSlice each, endpoints spread over the nodes, pods with app labels,
-- and policies of both kinds and every mode. Deterministic: the same counts
-- give the same objects.
--
--   local cluster = require("reconcile_cluster").generate{ services = 10000, ... }
--   cluster.objects        -- every object, Nodes first
--   cluster.slices         -- the EndpointSlices, in Service order
--   cluster.modified_slice(slice, n) -- a new version of a slice (one endpoint flips ready)
local M = {}

local function ip(a, b, c, d)
  return string.format("%d.%d.%d.%d", a, b, c, d)
end

-- The n-th (0-based) address of a /8-ish pool: a.(n/65536).(n/256%256).(n%256)
local function pool_address(first_octet, n)
  return ip(first_octet, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
end

local function node_name(i)
  return string.format("node-%d", i)
end

local function make_node(i)
  local annotations = { ["balancing.elf.io/nodeId"] = tostring(1000 + i) }
  if i % 2 == 0 then
    annotations["balancing.elf.io/nodeProxyIpv4"] = ip(172, 16, math.floor(i / 256), i % 256)
  end
  return {
    apiVersion = "v1",
    kind = "Node",
    metadata = {
      name = node_name(i),
      uid = string.format("node-uid-%d", i),
      labels = {
        ["kubernetes.io/hostname"] = node_name(i),
        ["topology.kubernetes.io/zone"] = "zone-" .. string.char(97 + i % 3),
        ["node-local-dns"] = i % 4 ~= 0 and "enabled" or nil,
      },
      annotations = annotations,
    },
    status = {
      addresses = {
        { type = "InternalIP", address = ip(192, 168, math.floor(i / 256), i % 256) },
        { type = "Hostname", address = node_name(i) },
      },
    },
  }
end

-- Service i: mostly ClusterIP; every 10th a NodePort, every 20th with
-- externalTrafficPolicy Local, every 7th with ClientIP affinity.
local function make_service(i)
  local namespace = string.format("ns-%d", i % 100)
  local spec = {
    type = "ClusterIP",
    clusterIP = pool_address(10, 0x600000 + i), -- 10.96.x.y
    ports = {
      { name = "http", port = 80, protocol = "TCP", targetPort = "http" },
      { name = "dns", port = 53, protocol = "UDP", targetPort = 5353 },
    },
  }
  spec.clusterIPs = { spec.clusterIP }
  if i % 10 == 0 then
    spec.type = "NodePort"
    spec.ports[1].nodePort = 30000 + (i / 10) % 2768
    spec.ports[2].nodePort = 30000 + (i / 10 + 1384) % 2768
  end
  if i % 20 == 0 then
    spec.externalTrafficPolicy = "Local"
  end
  if i % 7 == 0 then
    spec.sessionAffinity = "ClientIP"
  end
  return {
    apiVersion = "v1",
    kind = "Service",
    metadata = { name = string.format("svc-%d", i), namespace = namespace, uid = string.format("svc-uid-%d", i),
      resourceVersion = "1" },
    spec = spec,
  }
end

local function make_endpoint(service_index, e, nodes)
  local n = service_index * 10 + e
  return {
    addresses = { pool_address(11, n) },
    conditions = { ready = true, serving = true, terminating = false },
    nodeName = node_name((service_index * 7 + e * 13) % nodes + 1),
  }
end

local function make_slice(service, service_index, endpoints, nodes)
  local list = {}
  for e = 0, endpoints - 1 do
    list[#list + 1] = make_endpoint(service_index, e, nodes)
  end
  return {
    apiVersion = "discovery.k8s.io/v1",
    kind = "EndpointSlice",
    metadata = {
      name = service.metadata.name .. "-x1y2z",
      namespace = service.metadata.namespace,
      labels = { ["kubernetes.io/service-name"] = service.metadata.name },
      resourceVersion = "1",
    },
    addressType = "IPv4",
    ports = {
      { name = "http", port = 8080, protocol = "TCP" },
      { name = "dns", port = 5353, protocol = "UDP" },
    },
    endpoints = list,
  }
end

local function make_pod(i, nodes)
  return {
    apiVersion = "v1",
    kind = "Pod",
    metadata = {
      name = string.format("pod-%d", i),
      namespace = string.format("ns-%d", i % 100),
      uid = string.format("pod-uid-%d", i),
      labels = { app = string.format("app-%d", i % 50), tier = i % 2 == 0 and "web" or "cache" },
    },
    -- ten consecutive pods per node, so each node runs pods of ten apps
    spec = { nodeName = node_name(math.floor(i / 10) % nodes + 1) },
    status = {
      phase = "Running",
      podIP = pool_address(12, i),
      conditions = { { type = "Ready", status = "True" } },
    },
  }
end

local function port_info(port, protocol, name)
  return { port = tostring(port), protocol = protocol, name = name }
end

-- Policy p (1-based): odd ones LocalRedirect, even ones Balancing, frontends
-- alternating between a Service (serviceMatcher) and a virtual address.
local function make_policy(p, services)
  local app = string.format("app-%d", p % 50)
  local frontend
  if p % 3 == 0 then
    local s = (p * 97) % services
    frontend = { serviceMatcher = { namespace = string.format("ns-%d", s % 100),
      serviceName = string.format("svc-%d", s), toPorts = { port_info(80, "TCP", "http") } } }
  else
    frontend = { addressMatcher = { ip = ip(169, 254, 30 + math.floor(p / 256), p % 256),
      toPorts = { port_info(80, "TCP", "http") } } }
  end
  local policy = {
    apiVersion = "balancing.elf.io/v1beta1",
    metadata = {
      name = string.format("policy-%d", p),
      creationTimestamp = string.format("2024-05-01T10:%02d:00Z", p % 60),
      annotations = { ["balancing.elf.io/serviceId"] = tostring(100 + p) },
    },
    spec = { frontend = frontend },
  }
  if p % 2 == 1 then
    policy.kind = "LocalRedirectPolicy"
    policy.spec.backend = { endpointSelector = { matchLabels = { app = app } },
      toPorts = { port_info(8080, "TCP", "http") } }
  else
    policy.kind = "BalancingPolicy"
    local modes = { "podEndpoint", "hostPort", "nodeProxy", "address" }
    local mode = modes[(p / 2) % 4 + 1]
    if mode == "address" then
      policy.spec.backend = { addressEndpoint = { addresses = { ip(192, 0, 2, p % 256), ip(198, 51, 100, p % 256) },
        toPorts = { port_info(8080, "TCP", "http") } } }
    else
      policy.spec.backend = { serviceEndpoint = { endpointSelector = { matchLabels = { app = app } },
        toPorts = { port_info(8080, "TCP", "http") }, redirectMode = mode } }
    end
  end
  return policy
end

-- generate{ services, endpoints, nodes, pods, policies } → cluster
function M.generate(opts)
  local counts = {
    services = opts.services or 10000,
    endpoints = opts.endpoints or 10,
    nodes = opts.nodes or 100,
    pods = opts.pods or 1000,
    policies = opts.policies or 50,
  }
  local objects, slices = {}, {}
  for i = 1, counts.nodes do
    objects[#objects + 1] = make_node(i)
  end
  for i = 1, counts.services do
    local service = make_service(i)
    local slice = make_slice(service, i, counts.endpoints, counts.nodes)
    objects[#objects + 1] = service
    objects[#objects + 1] = slice
    slices[#slices + 1] = slice
  end
  for i = 1, counts.pods do
    objects[#objects + 1] = make_pod(i, counts.nodes)
  end
  for p = 1, counts.policies do
    objects[#objects + 1] = make_policy(p, counts.services)
  end
  return {
    counts = counts,
    objects = objects,
    slices = slices,
    -- A new version of a slice with endpoint (n % count) flipped between
    -- ready and not ready, as a rolling update does.
    modified_slice = function(slice, n)
      local endpoints = {}
      for i, endpoint in ipairs(slice.endpoints) do
        endpoints[i] = endpoint
      end
      local k = n % #endpoints + 1
      local old = endpoints[k]
      local ready = not old.conditions.ready
      endpoints[k] = { addresses = old.addresses, nodeName = old.nodeName,
        conditions = { ready = ready, serving = ready, terminating = false } }
      local metadata = {}
      for key, value in pairs(slice.metadata) do
        metadata[key] = value
      end
      metadata.resourceVersion = tostring(tonumber(slice.metadata.resourceVersion) + 1)
      return { apiVersion = slice.apiVersion, kind = slice.kind, metadata = metadata,
        addressType = slice.addressType, ports = slice.ports, endpoints = endpoints }
    end,
  }
end

return M
