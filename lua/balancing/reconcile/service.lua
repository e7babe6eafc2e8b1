-- A Service becomes map entries here: its frontends (ClusterIPs, load
-- balancer ingress IPs, external IPs, the NodePort on every node IP) and,
-- for each, the backend slots of its endpoints as this node sees them.
--
--   local entries, rejections = service.desired(store, ctx, namespace, name)
--
-- Pure: the same store and node context give the same entries, in the same
-- order. Rules are those of API.md "Service"; endpoint selection (ready,
-- terminating fallback, local, topology) is in reconcile/endpoints.lua.
local ffi = require("ffi")
local abi = require("balancing.abi")
local log = require("balancing.log")
local endpoints = require("balancing.reconcile.endpoints")

local M = {}

local NAT_TYPE = abi.nat_types.service
local MODES = abi.nat_modes.service
local PROTOCOLS = { TCP = true, UDP = true }

local DEFAULT_AFFINITY_SECONDS = 10800 -- kube-proxy's default (3 hours)
local MAX_AFFINITY_SECONDS = 86400     -- the API's upper bound (1 day)
local MAX_BACKENDS = ffi.C.MAX_BACKENDS_PER_FRONTEND

-- lua-cjson decodes JSON null as a userdata sentinel; treat it as absent.
local function present(v)
  if v == nil or type(v) == "userdata" then
    return nil
  end
  return v
end

local function field(t, ...)
  for i = 1, select("#", ...) do
    t = present(t)
    if type(t) ~= "table" then
      return nil
    end
    t = t[select(i, ...)]
  end
  return present(t)
end

function M.owner_key(namespace, name)
  return "service/" .. namespace .. "/" .. name
end

-- "Local" is the policy; "OnlyLocal" is how Kubernetes before 1.8 spelt it
-- for externalTrafficPolicy, and old manifests still carry it.
local function is_local_policy(value)
  return value == "Local" or value == "OnlyLocal"
end

local function is_ipv6(text)
  return type(text) == "string" and text:find(":", 1, true) ~= nil
end

-- The affinity timeout in seconds (0 = none), and a problem text when the
-- configured value had to be replaced.
local function affinity_seconds(spec)
  if present(spec.sessionAffinity) ~= "ClientIP" then
    return 0
  end
  local timeout = field(spec, "sessionAffinityConfig", "clientIP", "timeoutSeconds")
  if timeout == nil then
    return DEFAULT_AFFINITY_SECONDS
  end
  if type(timeout) ~= "number" or timeout < 1 or timeout % 1 ~= 0 then
    return DEFAULT_AFFINITY_SECONDS, string.format(
      "spec.sessionAffinityConfig.clientIP.timeoutSeconds: %s is not a positive integer, using %d",
      tostring(timeout), DEFAULT_AFFINITY_SECONDS)
  end
  return math.min(timeout, MAX_AFFINITY_SECONDS)
end

-- The ClusterIPs: spec.clusterIPs, else spec.clusterIP; the field path of each.
local function cluster_ips(spec)
  local list = present(spec.clusterIPs)
  if type(list) == "table" and #list > 0 then
    local out = {}
    for i, ip in ipairs(list) do
      out[i] = { ip = present(ip), path = string.format("spec.clusterIPs[%d]", i - 1) }
    end
    return out
  end
  local single = present(spec.clusterIP)
  if single ~= nil then
    return { { ip = single, path = "spec.clusterIP" } }
  end
  return {}
end

-- Every address frontend of the Service, in a fixed order (ClusterIP, load
-- balancer, external): { ip, path, mode, policy } where policy says whether
-- the internal or the external traffic policy applies.
local function address_frontends(spec, status, service_type)
  local out = {}
  for _, entry in ipairs(cluster_ips(spec)) do
    -- "None" is a headless Service: no virtual IP, clients resolve pods by DNS
    if entry.ip ~= "None" and entry.ip ~= "" then
      out[#out + 1] = { ip = entry.ip, path = entry.path, mode = "ClusterIP", policy = "internal" }
    end
  end
  if service_type == "LoadBalancer" then
    for i, ingress in ipairs(field(status, "loadBalancer", "ingress") or {}) do
      local ip = field(ingress, "ip")
      -- an ingress may carry only a hostname (some cloud balancers): nothing to program
      if ip ~= nil then
        out[#out + 1] = { ip = ip, path = string.format("status.loadBalancer.ingress[%d].ip", i - 1),
          mode = "LoadBalancer", policy = "external" }
      end
    end
  end
  for i, ip in ipairs(present(spec.externalIPs) or {}) do
    out[#out + 1] = { ip = present(ip), path = string.format("spec.externalIPs[%d]", i - 1),
      mode = "ExternalIP", policy = "external" }
  end
  return out
end

local function service_value(service_id, mode, affinity, local_only, total, local_count)
  local value = ffi.new("struct service_value")
  value.service_id = service_id
  value.total_count = total
  value.local_count = local_count
  value.affinity_seconds = affinity
  value.nat_mode = MODES[mode]
  value.flags = local_only and ffi.C.SERVICE_FLAG_LOCAL_ONLY or 0
  return value
end

local function frontend_order(a, b)
  if a.sort[1] ~= b.sort[1] then
    return a.sort[1] < b.sort[1]
  end
  if a.sort[2] ~= b.sort[2] then
    return a.sort[2] < b.sort[2]
  end
  return a.sort[3] < b.sort[3]
end

function M.desired(store, ctx, namespace, name)
  local entries = { owner = M.owner_key(namespace, name), frontends = {} }
  local rejections = {}
  local full_name = namespace .. "/" .. name
  local rejected = {}
  -- a bad address is met once per service port; report it once
  local function reject(reason)
    if not rejected[reason] then
      rejected[reason] = true
      rejections[#rejections + 1] = { kind = "Service", name = full_name, reason = reason }
    end
  end

  local svc = store:get("Service", namespace, name)
  local spec = svc and present(svc.spec)
  if not spec then
    return entries, rejections
  end
  local service_type = present(spec.type) or "ClusterIP"
  -- an ExternalName Service is a DNS CNAME; there is no address to translate
  if service_type == "ExternalName" then
    return entries, rejections
  end

  local service_id, id_err = store.ids:service_id(svc)
  if not service_id then
    reject("metadata: no service ID: " .. tostring(id_err))
    return entries, rejections
  end

  local affinity, affinity_problem = affinity_seconds(spec)
  if affinity_problem then
    reject(affinity_problem)
  end
  local internal_local = is_local_policy(present(spec.internalTrafficPolicy))
  local external_local = is_local_policy(present(spec.externalTrafficPolicy))
  local node_port_type = service_type == "NodePort" or service_type == "LoadBalancer"
  local addresses = address_frontends(spec, present(svc.status) or {}, service_type)
  local slices = store:endpoint_slices_of(namespace, name) or {}
  local node_name = ctx and ctx.node_name

  -- keys taken so far: "address:port/protocol" → the field that took it
  local taken = {}
  local frontends = {}

  local function add(address, path, mode, port, protocol, policy_local, categorized)
    local key_text = string.format("%s:%d/%s", address, port, protocol)
    if taken[key_text] then
      reject(string.format("%s: frontend %s is already programmed by %s", path, key_text, taken[key_text]))
      return
    end
    taken[key_text] = path
    -- every frontend of a service port shares one of two slot orders
    local set = policy_local and "local_" or "cluster"
    if not categorized.ordered[set] then
      categorized.ordered[set] = { endpoints.slot_order(categorized[set]) }
    end
    local ordered, local_count = categorized.ordered[set][1], categorized.ordered[set][2]
    if #ordered > MAX_BACKENDS then
      reject(string.format("%s: %d backends, only the first %d are programmed", path, #ordered, MAX_BACKENDS))
      local cut = {}
      for i = 1, MAX_BACKENDS do
        cut[i] = ordered[i]
      end
      ordered, local_count = cut, math.min(local_count, MAX_BACKENDS)
    end
    local backends = {}
    for i, record in ipairs(ordered) do
      backends[i] = abi.backend_value(record.address, record.port, record.is_local)
    end
    frontends[#frontends + 1] = {
      key = abi.service_key(address, port, protocol, NAT_TYPE),
      value = service_value(service_id, mode, affinity, policy_local, #backends, local_count),
      backends = backends,
      sort = { address == "*" and -1 or endpoints.address_order(address), port, abi.protocol_number(protocol) },
    }
  end

  for i, port in ipairs(present(spec.ports) or {}) do
    local path = string.format("spec.ports[%d]", i - 1)
    local protocol = endpoints.protocol(port.protocol)
    local port_label = present(port.name) or tostring(present(port.port))
    if not PROTOCOLS[protocol] then
      -- SCTP (or anything new): the socket hooks translate TCP and UDP only
      log.info("service port skipped: protocol not supported", {
        service = full_name, port = port_label, protocol = tostring(protocol) })
    elseif not endpoints.valid_port(present(port.port)) then
      reject(string.format("%s.port: %s is not a port number (1..65535)", path, tostring(present(port.port))))
    else
      local records = endpoints.from_slices(slices, port.name, protocol, node_name)
      local cluster, local_ = endpoints.categorize(records, ctx and ctx.zone)
      local categorized = { cluster = cluster, local_ = local_, ordered = {} }

      for _, fe in ipairs(addresses) do
        if not is_ipv6(fe.ip) then -- this version programs IPv4 only
          if not abi.ipv4_to_u32(fe.ip) then
            reject(string.format("%s: %q is not an IPv4 address", fe.path, tostring(fe.ip)))
          else
            local policy_local = external_local
            if fe.policy == "internal" then
              policy_local = internal_local
            end
            add(fe.ip, fe.path, fe.mode, port.port, protocol, policy_local, categorized)
          end
        end
      end

      local node_port = present(port.nodePort)
      if node_port_type and node_port ~= nil then
        if not endpoints.valid_port(node_port) then
          reject(string.format("%s.nodePort: %s is not a port number (1..65535)", path, tostring(node_port)))
        else
          add("*", path .. ".nodePort", "NodePort", node_port, protocol, external_local, categorized)
        end
      end
    end
  end

  table.sort(frontends, frontend_order)
  for i, fe in ipairs(frontends) do
    entries.frontends[i] = { key = fe.key, value = fe.value, backends = fe.backends }
  end
  return entries, rejections
end

return M
