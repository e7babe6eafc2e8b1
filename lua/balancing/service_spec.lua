-- What a Service asks of the socket load balancer, read once when it enters
-- the store (API.md "Service"): whether this agent serves it at all, its
-- IPv4 ClusterIPs, its TCP/UDP ports, and every frontend it claims, checked.
--
--   local spec = service_spec.parse(service, proxy_name)
--
-- The store indexes the result (frontend conflicts between Services, the
-- ClusterIPs a policy's serviceMatcher uses) and reconcile/service.lua adds
-- the endpoints; neither reads the Service's fields again. Pure: no store, no
-- I/O. The result is shared by its readers and never modified.
--
--   spec.skip          nil, or why no frontend is programmed at all
--   spec.cluster_ips   the IPv4 ClusterIPs, canonical text (a serviceMatcher's
--                      addresses), also for a Service left to another proxy
--   spec.ports         { port, protocol, name, node_port, path } per TCP/UDP
--                      service port with a valid number
--   spec.frontends     { key, address ("*" for the NodePort), port, mode, path,
--                      port_record (its entry of spec.ports: protocol, name) }
--                      in frontend order (address, port, TCP before UDP;
--                      NodePorts first), each claimed once
--   spec.affinity      session affinity timeout in seconds (0 = none)
--   spec.internal_local  internalTrafficPolicy Local (ClusterIP frontends only)
--   spec.problems      reasons naming the field, for what was refused
--   spec.notices       { message, fields, level } for what was left out on purpose
-- (problems and notices are one shared empty list when there are none: the
-- store holds a spec per Service, 10,000 of them in the benchmark cluster)
local abi = require("balancing.abi")
local object = require("balancing.object")

local M = {}

M.HEADLESS_LABEL = "service.kubernetes.io/headless"
M.PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"

local DEFAULT_AFFINITY_SECONDS = 10800 -- kube-proxy's default (3 hours)
local MAX_AFFINITY_SECONDS = 86400     -- the API's upper bound (1 day)
local PROTOCOLS = { TCP = true, UDP = true }

local present, field = object.present, object.field

local NO_ITEMS = setmetatable({}, { __newindex = function()
  error("balancing.service_spec: a spec's empty list is shared and read-only", 2)
end })

-- one spec shared by every Service without a spec
local EMPTY = { cluster_ips = NO_ITEMS, ports = NO_ITEMS, frontends = NO_ITEMS, problems = NO_ITEMS,
  notices = NO_ITEMS, skip = "no spec" }

local function full_name(service)
  return tostring(field(service, "metadata", "namespace")) .. "/" .. tostring(field(service, "metadata", "name"))
end

-- A Service this agent does not program is not at fault: a debug notice says
-- why, for an operator wondering where its frontends are.
local function skipped(spec, reason, service)
  spec.skip = reason
  spec.problems, spec.frontends = NO_ITEMS, NO_ITEMS
  spec.notices = { { level = "debug", message = "service not programmed",
    fields = { service = full_name(service), reason = reason } } }
  return spec
end

-- Whether another proxy serves the object (a Service or an EndpointSlice;
-- kube-proxy filters both by these labels): the reason, or nil when this
-- agent does. proxy_name is --service-proxy-name (nil: none).
function M.left_to_another_proxy(obj, proxy_name)
  local labels = field(obj, "metadata", "labels")
  if type(labels) ~= "table" then
    return nil
  end
  if present(labels[M.HEADLESS_LABEL]) ~= nil then
    return "labelled " .. M.HEADLESS_LABEL
  end
  local name = present(labels[M.PROXY_NAME_LABEL])
  if name ~= nil and name ~= proxy_name then
    return string.format("labelled %s=%s", M.PROXY_NAME_LABEL, tostring(name))
  end
  return nil
end

-- "Local" is the policy; "OnlyLocal" is how Kubernetes before 1.8 spelt it,
-- and old manifests still carry it.
local function is_local_policy(value)
  return value == "Local" or value == "OnlyLocal"
end

local function valid_port(port)
  return type(port) == "number" and port >= 1 and port <= 65535 and port % 1 == 0
end
M.valid_port = valid_port

-- Why a Service address cannot be a frontend, or nil: the unspecified
-- address (map_service's NodePort wildcard), broadcast, multicast.
local function unusable(order)
  if order == 0 then
    return "the unspecified address"
  end
  if order == 0xFFFFFFFF then
    return "the broadcast address"
  end
  if order >= 0xE0000000 and order < 0xF0000000 then
    return "a multicast address"
  end
  return nil
end

local function is_ipv6(text)
  return type(text) == "string" and text:find(":", 1, true) ~= nil
end

-- The affinity timeout in seconds, and a problem when the configured value
-- had to be replaced.
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

-- Field paths with a list position, made once per position: every Service
-- asks for "spec.ports[0]" again.
local function indexed_path(cache, format, i)
  local path = cache[i]
  if not path then
    path = string.format(format, i)
    cache[i] = path
  end
  return path
end
local CLUSTER_IP_PATHS, INGRESS_PATHS, EXTERNAL_IP_PATHS, PORT_PATHS, NODE_PORT_PATHS = {}, {}, {}, {}, {}

-- "10.96.0.10:53/UDP", "*:30080/TCP": a frontend's one key, for conflicts
-- and reasons (the store's index and every message use this form).
function M.frontend_key(address, port, protocol)
  return address .. ":" .. port .. "/" .. protocol
end

local function problem(spec, text)
  if spec.problems == NO_ITEMS then
    spec.problems = {}
  end
  local problems = spec.problems
  problems[#problems + 1] = text
end

-- One address of the Service: its canonical text and order, or nil after a
-- problem (not IPv4, or not usable); false for an IPv6 address (another
-- family, not an error).
local function read_address(spec, value, path)
  if is_ipv6(value) then
    return false
  end
  -- the strict reading first: the common form, and the faster parser
  local order = abi.ipv4_order(value) or abi.ipv4_sloppy_order(value)
  if not order then
    problem(spec, string.format("%s: %q is not an IPv4 address", path, tostring(value)))
    return nil
  end
  local why = unusable(order)
  if why then
    problem(spec, string.format("%s: %q is %s, not a frontend", path, tostring(value), why))
    return nil
  end
  return abi.ipv4_order_to_text(order), order
end

-- The IPv4 ClusterIPs (spec.clusterIPs, else spec.clusterIP), and whether
-- the Service has the IPv4 family at all (an IPv4 ClusterIP, usable or not).
local function read_cluster_ips(spec, service_spec)
  local out, has_ipv4 = {}, false
  local list = present(service_spec.clusterIPs)
  local paths
  if type(list) == "table" and #list > 0 then
    paths = CLUSTER_IP_PATHS
  else
    list = { present(service_spec.clusterIP) }
  end
  for i, ip in ipairs(list) do
    ip = present(ip)
    -- "None" is a headless Service: no virtual IP, clients resolve pods by DNS
    if type(ip) == "string" and ip ~= "None" and ip ~= "" then
      local path = paths and indexed_path(paths, "spec.clusterIPs[%d]", i - 1) or "spec.clusterIP"
      local text, order = read_address(spec, ip, path)
      if text ~= false then
        has_ipv4 = true
      end
      if text then
        local seen = false
        for j = 1, #out do -- at most two, one per family
          seen = seen or out[j].order == order
        end
        if not seen then
          out[#out + 1] = { ip = text, order = order, path = path, mode = "ClusterIP" }
        end
      end
    end
  end
  return out, has_ipv4
end

-- The other address frontends: load balancer ingress IPs (type LoadBalancer;
-- not those with ipMode Proxy, whose clients must reach the load balancer
-- itself) and external IPs. IPv6 ones belong to the other family.
local function read_other_addresses(spec, service_spec, status, service_type, out)
  if service_type == "LoadBalancer" then
    for i, ingress in ipairs(field(status, "loadBalancer", "ingress") or {}) do
      local ip = field(ingress, "ip")
      -- an ingress may carry only a hostname (some cloud balancers): nothing to program
      if ip ~= nil and field(ingress, "ipMode") ~= "Proxy" then
        local path = indexed_path(INGRESS_PATHS, "status.loadBalancer.ingress[%d].ip", i - 1)
        local text, order = read_address(spec, ip, path)
        if text then
          out[#out + 1] = { ip = text, order = order, path = path, mode = "LoadBalancer" }
        end
      end
    end
  end
  for i, ip in ipairs(present(service_spec.externalIPs) or {}) do
    local path = indexed_path(EXTERNAL_IP_PATHS, "spec.externalIPs[%d]", i - 1)
    local text, order = read_address(spec, present(ip), path)
    if text then
      out[#out + 1] = { ip = text, order = order, path = path, mode = "ExternalIP" }
    end
  end
end

-- The TCP/UDP ports with a valid number; others are problems, or notices
-- for protocols the socket hooks do not translate (SCTP).
local function read_ports(spec, service_spec, service)
  local ports = {}
  for i, port in ipairs(present(service_spec.ports) or {}) do
    local path = indexed_path(PORT_PATHS, "spec.ports[%d]", i - 1)
    local protocol = present(port.protocol) or "TCP"
    local number = present(port.port)
    if not PROTOCOLS[protocol] then
      if spec.notices == NO_ITEMS then
        spec.notices = {}
      end
      spec.notices[#spec.notices + 1] = { message = "service port skipped: protocol not supported",
        fields = { service = full_name(service), port = present(port.name) or tostring(number),
          protocol = tostring(protocol) } }
    elseif not valid_port(number) then
      problem(spec, string.format("%s.port: %s is not a port number (1..65535)", path, tostring(number)))
    else
      local name = present(port.name)
      if name == "" then
        name = nil
      end
      ports[#ports + 1] = { port = number, protocol = protocol, name = name, path = path,
        node_port = present(port.nodePort), index = i }
    end
  end
  return ports
end

-- A frontend as one number, unique per address:port/protocol and in their
-- sort order (address, then port, then TCP before UDP); the NodePort
-- wildcard (order -1) sorts first. At most 2^49: exact in a double.
local function frontend_number(order, port, protocol)
  return ((order + 1) * 0x10000 + port) * 2 + (protocol == "UDP" and 1 or 0)
end

local function frontend_less(a, b)
  return a.number < b.number
end

-- Adds one frontend unless the Service already claims it (a repeated
-- external IP, a ClusterIP listed as external too): the first field keeps it.
local function claim(spec, taken, address, order, port_record, port, mode, path)
  local protocol = port_record.protocol
  local number = frontend_number(order, port, protocol)
  local key = M.frontend_key(address, port, protocol)
  if taken[number] then
    problem(spec, string.format("%s: frontend %s is already programmed by %s", path, key, taken[number]))
    return
  end
  taken[number] = path
  local frontends = spec.frontends
  frontends[#frontends + 1] = { key = key, address = address, port = port, mode = mode, path = path,
    port_record = port_record, number = number }
end

-- parse(service, proxy_name) → spec (see the top of this file).
function M.parse(service, proxy_name)
  local service_spec = present(service.spec)
  if type(service_spec) ~= "table" then
    return EMPTY
  end
  local spec = { cluster_ips = {}, ports = NO_ITEMS, frontends = {}, problems = NO_ITEMS, notices = NO_ITEMS }
  local service_type = present(service_spec.type) or "ClusterIP"
  -- an ExternalName Service is a DNS CNAME; there is no address to translate
  if service_type == "ExternalName" then
    return skipped(spec, "type ExternalName", service)
  end
  local addresses, has_ipv4 = read_cluster_ips(spec, service_spec)
  for i, address in ipairs(addresses) do
    spec.cluster_ips[i] = address.ip
  end
  spec.ports = read_ports(spec, service_spec, service)
  local left_to = M.left_to_another_proxy(service, proxy_name)
  if left_to then
    return skipped(spec, "left to another proxy: " .. left_to, service)
  end
  if not has_ipv4 then
    -- kube-proxy programs a family only for a Service with a ClusterIP of
    -- that family: an IPv6 single-stack (or headless) Service has no IPv4
    -- frontend, not even for IPv4 external or ingress IPs listed on it
    return skipped(spec, "no IPv4 ClusterIP", service)
  end

  local problem_text
  spec.affinity, problem_text = affinity_seconds(service_spec)
  if problem_text then
    problem(spec, problem_text)
  end
  spec.internal_local = is_local_policy(present(service_spec.internalTrafficPolicy))
  read_other_addresses(spec, service_spec, present(service.status), service_type, addresses)

  local taken = {}
  local node_port_type = service_type == "NodePort" or service_type == "LoadBalancer"
  for _, port in ipairs(spec.ports) do
    for _, address in ipairs(addresses) do
      claim(spec, taken, address.ip, address.order, port, port.port, address.mode, address.path)
    end
    if node_port_type and port.node_port ~= nil then
      local path = indexed_path(NODE_PORT_PATHS, "spec.ports[%d].nodePort", port.index - 1)
      if valid_port(port.node_port) then
        claim(spec, taken, "*", -1, port, port.node_port, "NodePort", path)
      else
        problem(spec, string.format("%s: %s is not a port number (1..65535)", path, tostring(port.node_port)))
      end
    end
  end
  table.sort(spec.frontends, frontend_less)
  return spec
end

return M
