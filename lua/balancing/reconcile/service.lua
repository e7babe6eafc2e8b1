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
local object = require("balancing.object")
local endpoints = require("balancing.reconcile.endpoints")
local service_owner = require("balancing.store").service_owner
local new_table = require("table.new") -- LuaJIT: a table sized up front

local M = {}

local NAT_TYPE = abi.nat_types.service
local MODES = abi.nat_modes.service
local PROTOCOLS = { TCP = true, UDP = true }

local DEFAULT_AFFINITY_SECONDS = 10800 -- kube-proxy's default (3 hours)
local MAX_AFFINITY_SECONDS = 86400     -- the API's upper bound (1 day)
local MAX_BACKENDS = ffi.C.MAX_BACKENDS_PER_FRONTEND

local present, field = object.present, object.field

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

-- Field paths with a list position, made once per position: the reconcile
-- of every Service asks for "spec.ports[0]" again.
local function indexed_path(cache, format, i)
  local path = cache[i]
  if not path then
    path = string.format(format, i)
    cache[i] = path
  end
  return path
end
local CLUSTER_IP_PATHS, INGRESS_PATHS, EXTERNAL_IP_PATHS, PORT_PATHS, NODE_PORT_PATHS = {}, {}, {}, {}, {}

-- The address as a number (its sort order, abi.ipv4_order), or nil when it
-- is not IPv4 text; false for an IPv6 address, which this version skips.
local function address_number(ip)
  if is_ipv6(ip) then
    return false
  end
  return abi.ipv4_order(ip)
end

-- Every address frontend of the Service, in a fixed order (ClusterIP, load
-- balancer, external): { ip, number, path, mode }. The internal traffic
-- policy applies to ClusterIP frontends, the external one to the others.
local function address_frontends(spec, status, service_type)
  local out = {}
  -- the ClusterIPs: spec.clusterIPs, else spec.clusterIP
  local list = present(spec.clusterIPs)
  if type(list) == "table" and #list > 0 then
    for i, ip in ipairs(list) do
      ip = present(ip)
      -- "None" is a headless Service: no virtual IP, clients resolve pods by DNS
      if ip ~= "None" and ip ~= "" then
        out[#out + 1] = { ip = ip, number = address_number(ip),
          path = indexed_path(CLUSTER_IP_PATHS, "spec.clusterIPs[%d]", i - 1), mode = "ClusterIP" }
      end
    end
  else
    local ip = present(spec.clusterIP)
    if ip ~= nil and ip ~= "None" and ip ~= "" then
      out[#out + 1] = { ip = ip, number = address_number(ip), path = "spec.clusterIP", mode = "ClusterIP" }
    end
  end
  if service_type == "LoadBalancer" then
    for i, ingress in ipairs(field(status, "loadBalancer", "ingress") or {}) do
      local ip = field(ingress, "ip")
      -- an ingress may carry only a hostname (some cloud balancers): nothing to program
      if ip ~= nil then
        out[#out + 1] = { ip = ip, number = address_number(ip),
          path = indexed_path(INGRESS_PATHS, "status.loadBalancer.ingress[%d].ip", i - 1),
          mode = "LoadBalancer" }
      end
    end
  end
  for i, ip in ipairs(present(spec.externalIPs) or {}) do
    ip = present(ip)
    out[#out + 1] = { ip = ip, number = address_number(ip),
      path = indexed_path(EXTERNAL_IP_PATHS, "spec.externalIPs[%d]", i - 1), mode = "ExternalIP" }
  end
  return out
end

local service_value_t = ffi.typeof("struct service_value")
local backend_value_t = ffi.typeof("struct backend_value")
local BACKEND_FLAG_LOCAL = ffi.C.BACKEND_FLAG_LOCAL
local ADDRESS_ORDER, BACKEND_PORT, IS_LOCAL = endpoints.ORDER, endpoints.PORT, endpoints.IS_LOCAL

-- abi.backend_value for an endpoint record, from the address number the
-- record already holds rather than its text
local function backend_value(record)
  local value = backend_value_t()
  value.address = abi.ipv4_order_to_u32(record[ADDRESS_ORDER])
  value.port = abi.htons(record[BACKEND_PORT])
  value.flags = record[IS_LOCAL] and BACKEND_FLAG_LOCAL or 0
  return value
end

local function service_value(service_id, mode, affinity, local_only, total, local_count)
  local value = service_value_t()
  value.service_id = service_id
  value.total_count = total
  value.local_count = local_count
  value.affinity_seconds = affinity
  value.nat_mode = MODES[mode]
  value.flags = local_only and ffi.C.SERVICE_FLAG_LOCAL_ONLY or 0
  return value
end

-- A frontend as one number, unique per address:port/protocol and in their
-- sort order (address, then port, then TCP before UDP); the NodePort
-- wildcard "*" (number -1) sorts first. At most 2^49: exact in a double.
local function frontend_number(number, port, protocol)
  return ((number + 1) * 0x10000 + port) * 2 + (protocol == "UDP" and 1 or 0)
end

local function frontend_order(a, b)
  return a.sort < b.sort
end

-- What one Service's reconcile gathers: its rejections (each reason once: a
-- bad address is met once per service port), the frontends so far and the
-- frontends taken (number → the field that took it). The helpers below take
-- it as their first argument rather than closing over it: LuaJIT cannot
-- compile the creation of a closure, and this runs for every Service.
local function reject(state, reason)
  local rejected = state.rejected
  if not rejected then
    rejected = {}
    state.rejected = rejected
  end
  if not rejected[reason] then
    rejected[reason] = true
    local rejections = state.rejections
    rejections[#rejections + 1] = { kind = "Service", name = state.full_name, reason = reason }
  end
end

-- A frontend of the service port with the endpoints of its traffic policy,
-- in slot order (ordered, and how many of them are local).
local function add(state, address, number, path, mode, port, protocol, policy_local, ordered, local_count)
  local key_number = frontend_number(number, port, protocol)
  local taken_by = state.taken[key_number]
  if taken_by then
    local key_text = string.format("%s:%d/%s", address, port, protocol)
    reject(state, string.format("%s: frontend %s is already programmed by %s", path, key_text, taken_by))
    return
  end
  state.taken[key_number] = path
  local count = #ordered
  if count > MAX_BACKENDS then
    reject(state, string.format("%s: %d backends, only the first %d are programmed", path, count, MAX_BACKENDS))
    count, local_count = MAX_BACKENDS, math.min(local_count, MAX_BACKENDS)
  end
  local backends = new_table(count, 0)
  for i = 1, count do
    backends[i] = backend_value(ordered[i])
  end
  local frontends = state.frontends
  frontends[#frontends + 1] = {
    key = abi.service_key(address, port, protocol, NAT_TYPE),
    value = service_value(state.service_id, mode, state.affinity, policy_local, count, local_count),
    backends = backends,
    sort = key_number, -- removed once sorted
  }
end

function M.desired(store, ctx, namespace, name)
  local rejections, frontends = {}, {}
  local entries = { owner = service_owner(namespace, name), frontends = frontends }
  local full_name = namespace .. "/" .. name
  local state = { rejections = rejections, rejected = false, full_name = full_name, taken = {}, frontends = frontends,
    service_id = false, affinity = 0 }

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
    reject(state, "metadata: no service ID: " .. tostring(id_err))
    return entries, rejections
  end
  state.service_id = service_id

  local affinity, affinity_problem = affinity_seconds(spec)
  if affinity_problem then
    reject(state, affinity_problem)
  end
  state.affinity = affinity
  local internal_local = is_local_policy(present(spec.internalTrafficPolicy))
  local external_local = is_local_policy(present(spec.externalTrafficPolicy))
  local node_port_type = service_type == "NodePort" or service_type == "LoadBalancer"
  local addresses = address_frontends(spec, present(svc.status), service_type)
  local slices = store:endpoint_slices_of(namespace, name) or {}
  local node_name = ctx and ctx.node_name

  for i, port in ipairs(present(spec.ports) or {}) do
    local protocol = endpoints.protocol(port.protocol)
    if not PROTOCOLS[protocol] then
      -- SCTP (or anything new): the socket hooks translate TCP and UDP only
      log.info("service port skipped: protocol not supported", {
        service = full_name, port = present(port.name) or tostring(present(port.port)),
        protocol = tostring(protocol) })
    elseif not endpoints.valid_port(present(port.port)) then
      reject(state, string.format("%s.port: %s is not a port number (1..65535)",
        indexed_path(PORT_PATHS, "spec.ports[%d]", i - 1), tostring(present(port.port))))
    else
      local records = endpoints.from_slices(slices, port.name, protocol, node_name)
      local cluster, local_ = endpoints.categorize(records, ctx and ctx.zone)
      -- every frontend of the port shares one of two slot orders (both cheap
      -- when unused: an empty local set, a set already in order, is returned
      -- as it is)
      local cluster_ordered, cluster_local_count = endpoints.slot_order(cluster)
      local local_ordered, local_count = endpoints.slot_order(local_)

      for _, fe in ipairs(addresses) do
        if fe.number == nil then
          reject(state, string.format("%s: %q is not an IPv4 address", fe.path, tostring(fe.ip)))
        elseif fe.number then -- false: IPv6, and this version programs IPv4 only
          local policy_local = external_local
          if fe.mode == "ClusterIP" then
            policy_local = internal_local
          end
          local ordered, count = cluster_ordered, cluster_local_count
          if policy_local then
            ordered, count = local_ordered, local_count
          end
          add(state, fe.ip, fe.number, fe.path, fe.mode, port.port, protocol, policy_local, ordered, count)
        end
      end

      local node_port = present(port.nodePort)
      if node_port_type and node_port ~= nil then
        if not endpoints.valid_port(node_port) then
          reject(state, string.format("%s.nodePort: %s is not a port number (1..65535)",
            indexed_path(PORT_PATHS, "spec.ports[%d]", i - 1), tostring(node_port)))
        else
          local ordered, count = cluster_ordered, cluster_local_count
          if external_local then
            ordered, count = local_ordered, local_count
          end
          add(state, "*", -1, indexed_path(NODE_PORT_PATHS, "spec.ports[%d].nodePort", i - 1), "NodePort",
            node_port, protocol, external_local, ordered, count)
        end
      end
    end
  end

  table.sort(frontends, frontend_order)
  for _, fe in ipairs(frontends) do
    fe.sort = nil
  end
  return entries, rejections
end

return M
