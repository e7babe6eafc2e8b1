-- The rules LocalRedirectPolicy and BalancingPolicy share (API.md, "PortInfo",
-- "Both policies"): reading and checking a spec, turning its frontend into
-- address:port/protocol frontends with their backend port, the usable-pod test,
-- where a policy applies, which of two policies of one kind owns a frontend,
-- and the flow of a reconcile (desired). reconcile/localredirect.lua and
-- reconcile/balancing.lua only add their backends. Everything here is pure:
-- the same store and context give the same answer, in the same order.
--
-- Choices where API.md is silent (each has a spec in reconcile_policy_spec.lua):
--  * field paths in reasons count list positions from 0, as the API server
--    does (`spec.backend.toPorts[0].port`);
--  * a PortInfo without `protocol` means TCP, as a Service port does;
--  * a frontend port without a backend port of its name is not programmed
--    (the others are), and a serviceMatcher whose Service does not exist (yet)
--    programs nothing: neither makes the spec invalid;
--  * the address 0.0.0.0 is refused (address 0 is map_service's NodePort
--    wildcard); with more than one port on either side of an addressMatcher,
--    both sides need names;
--  * a same-kind conflict is decided per frontend and per node: the older
--    policy wins a frontend where it would program it (valid spec and ID,
--    applies to this node; whether it has backends right now does not count,
--    so pod churn never moves a frontend between policies); the younger one
--    loses only the frontends they share, keeps the others, and gets one
--    rejection per frontend lost.
local ffi = require("ffi")
local abi = require("balancing.abi")
local object = require("balancing.object")
local selector = require("balancing.selector")
local ids = require("balancing.ids")
local policy_owner = require("balancing.store").policy_owner

local M = {}

M.KINDS = {
  LocalRedirectPolicy = { nat_type = "localRedirect" },
  BalancingPolicy = { nat_type = "balancing" },
}

local REDIRECT_MODES = { podEndpoint = true, hostPort = true, nodeProxy = true }

local present, field, is_list = object.present, object.field, object.is_list

local function show(value)
  if type(value) == "string" then
    return string.format("%q", value)
  end
  if type(value) == "table" then
    return "an object or list"
  end
  return tostring(value)
end

-- "10.0.0.2" -> 0x0A000002, for sorting addresses as numbers (every address
-- here is checked IPv4 text already).
local address_order = abi.ipv4_order

-- A usable IPv4 address text, or nil, reason. 0.0.0.0 is refused: address 0
-- is the NodePort wildcard of map_service.
local function parse_ipv4(value, path)
  value = present(value)
  if value == nil or value == "" then
    return nil, path .. ": required"
  end
  if not abi.ipv4_to_u32(value) then
    return nil, string.format("%s: %s is not an IPv4 address", path, show(value))
  end
  if value == "0.0.0.0" then
    return nil, string.format("%s: %s is not a usable address", path, show(value))
  end
  return value
end

-- PortInfo.port is a decimal string of at most five digits whose value is
-- 1..65535, as the CRD's pattern and CEL rule say.
function M.parse_port(value)
  if type(value) ~= "string" or not value:match("^%d%d?%d?%d?%d?$") then
    return nil
  end
  local number = tonumber(value)
  if number < 1 or number > 65535 then
    return nil
  end
  return number
end

local function parse_port_info(entry, path)
  if type(entry) ~= "table" then
    return nil, path .. ": must be an object {port, protocol, name}"
  end
  local text = present(entry.port)
  if text == nil then
    return nil, path .. ".port: required"
  end
  local port = M.parse_port(text)
  if not port then
    return nil, string.format("%s.port: %s is not a port (a decimal string \"1\"..\"65535\")",
      path, show(text))
  end
  local protocol = present(entry.protocol) or "TCP"
  if protocol ~= "TCP" and protocol ~= "UDP" then
    return nil, string.format("%s.protocol: %s is not TCP or UDP", path, show(protocol))
  end
  local name = present(entry.name)
  if name ~= nil and type(name) ~= "string" then
    return nil, string.format("%s.name: %s is not a string", path, show(name))
  end
  if name == "" then
    name = nil
  end
  return { port = port, protocol = protocol, name = name }
end

-- A list of PortInfo. With more than one port every port needs a name (the
-- names map frontend ports to backend ports), and a name is used once.
local function parse_port_list(list, path, required)
  list = present(list)
  if list == nil or (type(list) == "table" and next(list) == nil) then
    if required then
      return nil, path .. ": at least one port is required"
    end
    return {}
  end
  if not is_list(list) then
    return nil, path .. ": must be a list of {port, protocol, name}"
  end
  local ports, names = {}, {}
  for i, entry in ipairs(list) do
    local where = string.format("%s[%d]", path, i - 1)
    local port, err = parse_port_info(entry, where)
    if not port then
      return nil, err
    end
    if #list > 1 and not port.name then
      return nil, where .. ".name: required when more than one port is listed"
    end
    if port.name then
      if names[port.name] then
        return nil, string.format("%s.name: %s is used by %s too", where, show(port.name), names[port.name])
      end
      names[port.name] = where
    end
    port.path = where
    ports[i] = port
  end
  return ports
end

-- selector.compile names the part at fault relative to the selector, with
-- list positions from 0 like every field path here ("matchExpressions[0]
-- .operator: ..."); it joins the policy's field path as a sub-field, or
-- after a colon when it is about the selector itself ("missing").
local function parse_selector(spec, path)
  local compiled, err = selector.compile(present(spec))
  if not compiled then
    if err:match("^match") then
      return nil, path .. "." .. err
    end
    return nil, path .. ": " .. err
  end
  return compiled
end

local function exactly_one(parent, path, a, b)
  local has_a, has_b = present(parent[a]) ~= nil, present(parent[b]) ~= nil
  if has_a and has_b then
    return nil, string.format("%s: exactly one of %s and %s, not both", path, a, b)
  end
  if not has_a and not has_b then
    return nil, string.format("%s: exactly one of %s and %s is required", path, a, b)
  end
  return has_a and a or b
end

local function parse_object(value, path)
  value = present(value)
  if value == nil then
    return nil, path .. ": required"
  end
  if type(value) ~= "table" or (next(value) ~= nil and is_list(value)) then
    return nil, path .. ": must be an object"
  end
  return value
end

local function parse_frontend(spec)
  local frontend, err = parse_object(spec.frontend, "spec.frontend")
  if not frontend then
    return nil, err
  end
  local which
  which, err = exactly_one(frontend, "spec.frontend", "serviceMatcher", "addressMatcher")
  if not which then
    return nil, err
  end
  local path = "spec.frontend." .. which
  local matcher
  matcher, err = parse_object(frontend[which], path)
  if not matcher then
    return nil, err
  end
  if which == "serviceMatcher" then
    for _, key in ipairs({ "namespace", "serviceName" }) do
      local value = present(matcher[key])
      if type(value) ~= "string" or value == "" then
        return nil, string.format("%s.%s: required (a string)", path, key)
      end
    end
    local ports
    ports, err = parse_port_list(matcher.toPorts, path .. ".toPorts", false)
    if not ports then
      return nil, err
    end
    return { mode = "service", namespace = matcher.namespace, service_name = matcher.serviceName,
      ports = ports }
  end
  local ip
  ip, err = parse_ipv4(matcher.ip, path .. ".ip")
  if not ip then
    return nil, err
  end
  local ports
  ports, err = parse_port_list(matcher.toPorts, path .. ".toPorts", true)
  if not ports then
    return nil, err
  end
  return { mode = "address", ip = ip, ports = ports }
end

local function parse_endpoint_selector(backend, path)
  if present(backend.endpointSelector) == nil then
    return nil, path .. ".endpointSelector: required"
  end
  return parse_selector(backend.endpointSelector, path .. ".endpointSelector")
end

local function parse_local_redirect_backend(spec)
  local backend, err = parse_object(spec.backend, "spec.backend")
  if not backend then
    return nil, err
  end
  local compiled
  compiled, err = parse_endpoint_selector(backend, "spec.backend")
  if not compiled then
    return nil, err
  end
  local ports
  ports, err = parse_port_list(backend.toPorts, "spec.backend.toPorts", true)
  if not ports then
    return nil, err
  end
  return { selector = compiled, ports = ports }
end

local function parse_balancing_backend(spec)
  local backend, err = parse_object(spec.backend, "spec.backend")
  if not backend then
    return nil, err
  end
  local which
  which, err = exactly_one(backend, "spec.backend", "serviceEndpoint", "addressEndpoint")
  if not which then
    return nil, err
  end
  local path = "spec.backend." .. which
  local endpoint
  endpoint, err = parse_object(backend[which], path)
  if not endpoint then
    return nil, err
  end
  local ports
  ports, err = parse_port_list(endpoint.toPorts, path .. ".toPorts", true)
  if not ports then
    return nil, err
  end
  if which == "serviceEndpoint" then
    local compiled
    compiled, err = parse_endpoint_selector(endpoint, path)
    if not compiled then
      return nil, err
    end
    local mode = present(endpoint.redirectMode)
    if mode == nil or mode == "" then
      mode = "podEndpoint"
    end
    if not REDIRECT_MODES[mode] then
      return nil, string.format("%s.redirectMode: %s is not podEndpoint, hostPort or nodeProxy",
        path, show(mode))
    end
    return { mode = mode, selector = compiled, ports = ports }
  end
  local list = present(endpoint.addresses)
  if list == nil or (type(list) == "table" and next(list) == nil) then
    return nil, path .. ".addresses: at least one address is required"
  end
  if not is_list(list) then
    return nil, path .. ".addresses: must be a list of IPv4 addresses"
  end
  local addresses = {}
  for i, value in ipairs(list) do
    local ip
    ip, err = parse_ipv4(value, string.format("%s.addresses[%d]", path, i - 1))
    if not ip then
      return nil, err
    end
    addresses[i] = ip
  end
  return { mode = "address", addresses = addresses, ports = ports }
end

-- With more than one port on either side of an addressMatcher, ports map by
-- name, so every port on both sides needs one. (A serviceMatcher's frontend
-- ports are the Service's, whose names Kubernetes already requires.)
local function check_port_names(frontend, backend)
  if frontend.mode ~= "address" or (#frontend.ports == 1 and #backend.ports == 1) then
    return true
  end
  for _, side in ipairs({ frontend.ports, backend.ports }) do
    for _, port in ipairs(side) do
      if not port.name then
        return nil, port.path .. ".name: required when more than one port is mapped"
      end
    end
  end
  return true
end

local function parse_config(spec, kind)
  local config = present(spec.config)
  local parsed = { enable_out_cluster = true }
  if config == nil then
    return parsed
  end
  if type(config) ~= "table" then
    return nil, "spec.config: must be an object"
  end
  if present(config.nodeLabelSelector) ~= nil then
    local compiled, err = parse_selector(config.nodeLabelSelector, "spec.config.nodeLabelSelector")
    if not compiled then
      return nil, err
    end
    parsed.node_selector = compiled
  end
  local enable = present(config.enableOutCluster)
  if kind == "BalancingPolicy" and enable ~= nil then
    if type(enable) ~= "boolean" then
      return nil, string.format("spec.config.enableOutCluster: %s is not true or false", show(enable))
    end
    parsed.enable_out_cluster = enable
  end
  return parsed
end

-- parse(kind, policy) → the checked spec, or nil, reason naming the field:
--   { frontend = { mode = "service", namespace, service_name, ports }
--              | { mode = "address", ip, ports },
--     backend  = { selector, ports, mode = nil (LocalRedirect) | "podEndpoint" | "hostPort"
--                  | "nodeProxy" } | { mode = "address", addresses, ports },
--     node_selector = compiled | nil, enable_out_cluster = boolean }
-- where each port is { port = number, protocol = "TCP"|"UDP", name = string|nil }.
function M.parse(kind, policy)
  assert(M.KINDS[kind], "unknown policy kind")
  local spec, err = parse_object(policy.spec, "spec")
  if not spec then
    return nil, err
  end
  local frontend, backend, config
  frontend, err = parse_frontend(spec)
  if not frontend then
    return nil, err
  end
  if kind == "LocalRedirectPolicy" then
    backend, err = parse_local_redirect_backend(spec)
  else
    backend, err = parse_balancing_backend(spec)
  end
  if not backend then
    return nil, err
  end
  local ok
  ok, err = check_port_names(frontend, backend)
  if not ok then
    return nil, err
  end
  config, err = parse_config(spec, kind)
  if not config then
    return nil, err
  end
  return { frontend = frontend, backend = backend, node_selector = config.node_selector,
    enable_out_cluster = config.enable_out_cluster }
end

-- Whether a checked policy applies on this node. A LocalRedirectPolicy never
-- applies outside the cluster: such a host runs no pods, so no local backend.
function M.applies(kind, spec, ctx)
  if ctx.out_cluster and (kind == "LocalRedirectPolicy" or not spec.enable_out_cluster) then
    return false
  end
  if spec.node_selector and not spec.node_selector:matches(ctx.labels or {}) then
    return false
  end
  return true
end

-- The IPv4 ClusterIPs of a Service (none for headless and ExternalName ones).
local function cluster_ips(service)
  local spec = present(service.spec) or {}
  if spec.type == "ExternalName" then
    return {}
  end
  local list = present(spec.clusterIPs)
  if type(list) ~= "table" or #list == 0 then
    list = { present(spec.clusterIP) }
  end
  local ips, seen = {}, {}
  for _, ip in ipairs(list) do
    if type(ip) == "string" and abi.ipv4_to_u32(ip) and ip ~= "0.0.0.0" and not seen[ip] then
      seen[ip] = true
      ips[#ips + 1] = ip
    end
  end
  return ips
end

-- The Service's TCP/UDP ports selected by the matcher's toPorts (all of them
-- when toPorts is empty). A toPorts entry selects the Service port of the same
-- number and protocol, and of the same name when both have one. The frontend
-- port keeps the Service port's name (else the entry's) for name mapping.
local function service_ports(service, wanted)
  local ports = {}
  local spec = present(service.spec) or {}
  for _, sp in ipairs(present(spec.ports) or {}) do
    local protocol = present(sp.protocol) or "TCP"
    local number = tonumber(present(sp.port))
    local name = present(sp.name)
    if name == "" then
      name = nil
    end
    if (protocol == "TCP" or protocol == "UDP") and number and number >= 1 and number <= 65535 then
      if #wanted == 0 then
        ports[#ports + 1] = { port = number, protocol = protocol, name = name }
      else
        for _, want in ipairs(wanted) do
          if want.port == number and want.protocol == protocol
              and (want.name == nil or name == nil or want.name == name) then
            ports[#ports + 1] = { port = number, protocol = protocol, name = name or want.name }
            break
          end
        end
      end
    end
  end
  return ports
end

-- Which backend port each frontend port maps to: one port on each side map to
-- each other; otherwise by name. Returns an array parallel to frontend_ports
-- (nil where no backend port has the frontend port's name).
local function map_ports(frontend_ports, backend_ports)
  local mapped = {}
  if #frontend_ports == 1 and #backend_ports == 1 then
    mapped[1] = backend_ports[1].port
    return mapped
  end
  local by_name = {}
  for _, port in ipairs(backend_ports) do
    if port.name then
      by_name[port.name] = port.port
    end
  end
  for i, port in ipairs(frontend_ports) do
    mapped[i] = port.name and by_name[port.name] or nil
  end
  return mapped
end

function M.frontend_key(address, port, protocol)
  return string.format("%s:%d/%s", address, port, protocol)
end

local function frontend_less(a, b)
  if a.order ~= b.order then
    return a.order < b.order
  end
  if a.port ~= b.port then
    return a.port < b.port
  end
  return a.protocol < b.protocol
end

-- frontends(store, spec) → the frontends a checked policy programs, sorted by
-- address, port, protocol:
--   { { address = "10.96.0.10", port = 53, protocol = "UDP", key = "10.96.0.10:53/UDP",
--       backend_port = 5353 }, ... }
function M.frontends(store, spec)
  local frontend = spec.frontend
  local addresses, ports
  if frontend.mode == "address" then
    addresses, ports = { frontend.ip }, frontend.ports
  else
    local service = store:get("Service", frontend.namespace, frontend.service_name)
    if not service then
      return {}
    end
    addresses, ports = cluster_ips(service), service_ports(service, frontend.ports)
  end
  local mapped = map_ports(ports, spec.backend.ports)
  local list, seen = {}, {}
  for _, address in ipairs(addresses) do
    for i, port in ipairs(ports) do
      local key = M.frontend_key(address, port.port, port.protocol)
      if mapped[i] and not seen[key] then
        seen[key] = true
        list[#list + 1] = { address = address, port = port.port, protocol = port.protocol, key = key,
          backend_port = mapped[i], order = address_order(address) }
      end
    end
  end
  table.sort(list, frontend_less)
  return list
end

-- Pods ---------------------------------------------------------------------

-- A usable pod is Running, Ready, has a pod IP and is not being deleted.
function M.usable_pod(pod)
  if field(pod, "metadata", "deletionTimestamp") ~= nil then
    return false
  end
  local status = present(pod.status)
  if type(status) ~= "table" or status.phase ~= "Running" then
    return false
  end
  local ready = false
  for _, condition in ipairs(present(status.conditions) or {}) do
    if condition.type == "Ready" then
      ready = condition.status == "True"
    end
  end
  if not ready then
    return false
  end
  local ip = present(status.podIP)
  if type(ip) == "string" and ip ~= "" then
    return true
  end
  for _, entry in ipairs(present(status.podIPs) or {}) do
    if type(entry) == "table" and type(present(entry.ip)) == "string" and entry.ip ~= "" then
      return true
    end
  end
  return false
end

-- A backend pod: one the backend selector picks by its labels, and usable.
function M.backend_pod(compiled, pod)
  return compiled:matches(field(pod, "metadata", "labels")) and M.usable_pod(pod)
end

-- The pod's IPv4 address (status.podIP, else the first IPv4 of status.podIPs).
function M.pod_ipv4(pod)
  local status = present(pod.status) or {}
  local ip = present(status.podIP)
  if type(ip) == "string" and abi.ipv4_to_u32(ip) then
    return ip
  end
  for _, entry in ipairs(present(status.podIPs) or {}) do
    ip = type(entry) == "table" and present(entry.ip)
    if type(ip) == "string" and abi.ipv4_to_u32(ip) then
      return ip
    end
  end
  return nil
end

function M.pod_node(pod)
  local name = field(pod, "spec", "nodeName")
  if type(name) ~= "string" or name == "" then
    return nil
  end
  return name
end

-- Conflicts ----------------------------------------------------------------

local name_of = object.name

-- Whether policy a is older than b: creationTimestamp, then name (a policy
-- without a creationTimestamp, from a manifest, counts as newer), the same
-- order the ID registry uses for two policies claiming one serviceId.
M.older = ids.older

-- The frontend keys another policy programs on this node (nil when it
-- programs none: invalid spec or ID, or not for this node).
local function claimed_keys(store, ctx, kind, policy)
  local spec = M.parse(kind, policy)
  if not spec or not M.applies(kind, spec, ctx) or not store.ids:policy_id(policy) then
    return nil
  end
  local keys = {}
  for _, frontend in ipairs(M.frontends(store, spec)) do
    keys[frontend.key] = true
  end
  return keys
end

-- resolve_conflicts(store, ctx, kind, policy, frontends) → the frontends this
-- policy keeps, and one rejection per frontend an older policy of the same
-- kind programs on this node.
function M.resolve_conflicts(store, ctx, kind, policy, frontends)
  local name = name_of(policy)
  local keys_of = {}
  local kept, rejections = {}, {}
  for _, frontend in ipairs(frontends) do
    -- the claimants come oldest first: the first older one that programs
    -- the frontend wins it, and the policy itself ends the older ones
    local winner
    for _, other in ipairs(store:policies_claiming(kind, frontend.key)) do
      if not M.older(other, policy) then
        break
      end
      local other_name = name_of(other)
      if keys_of[other_name] == nil then
        keys_of[other_name] = claimed_keys(store, ctx, kind, other) or false
      end
      if keys_of[other_name] and keys_of[other_name][frontend.key] then
        winner = other
        break
      end
    end
    if winner then
      rejections[#rejections + 1] = { kind = kind, name = name, reason = string.format(
        "frontend %s is claimed by older %s %s (only this frontend is not programmed)",
        frontend.key, kind, name_of(winner)) }
    else
      kept[#kept + 1] = frontend
    end
  end
  return kept, rejections
end

-- The whole flow ----------------------------------------------------------

function M.empty_entries(kind, name)
  local entries = { owner = policy_owner(kind, name), frontends = {} }
  if kind == "LocalRedirectPolicy" then
    entries.loop_pods = {}
  end
  return entries
end

-- prepare(kind, store, ctx, name) → plan, rejections. plan is nil when the
-- policy programs nothing on this node (gone, invalid, or not for this node);
-- else { policy, spec, id, frontends } with the frontends it wins.
function M.prepare(kind, store, ctx, name)
  local policy = store:get(kind, "", name)
  if not policy then
    return nil, {}
  end
  local spec, reason = M.parse(kind, policy)
  if not spec then
    return nil, { { kind = kind, name = name, reason = reason } }
  end
  local id, err = store.ids:policy_id(policy)
  if not id then
    return nil, { { kind = kind, name = name, reason = err } }
  end
  if not M.applies(kind, spec, ctx) then
    return nil, {}
  end
  local frontends, rejections = M.resolve_conflicts(store, ctx, kind, policy,
    M.frontends(store, spec))
  return { policy = policy, spec = spec, id = id, frontends = frontends }, rejections
end

-- desired(kind, store, ctx, name, backends) → entries, rejections: the flow
-- both kinds share. backends(store, ctx, plan, entries) gives the NAT mode and
-- the targets (M.targets().sorted()) of the won frontends, or nil when the
-- policy programs nothing right now; it may add to entries (loop_pods).
function M.desired(kind, store, ctx, name, backends)
  local entries = M.empty_entries(kind, name)
  local plan, rejections = M.prepare(kind, store, ctx, name)
  if not plan or #plan.frontends == 0 then
    return entries, rejections
  end
  local mode, targets = backends(store, ctx, plan, entries)
  if mode then
    entries.frontends = M.frontend_entries(kind, plan, mode, targets)
  end
  return entries, rejections
end

-- Backend targets: { address = "10.244.1.5", is_local = bool }. One entry per
-- address (a backend on this node by any of its sources stays local), local
-- ones first, then by address.
function M.targets()
  local list, index = {}, {}
  local set = {}
  function set.add(address, is_local)
    local target = index[address]
    if target then
      target.is_local = target.is_local or is_local
      return
    end
    target = { address = address, is_local = is_local and true or false, order = address_order(address) }
    index[address] = target
    list[#list + 1] = target
  end
  -- A frontend has at most MAX_BACKENDS_PER_FRONTEND slots (a __u16 count);
  -- past that, the local ones and then the lowest addresses are kept.
  function set.sorted()
    table.sort(list, function(a, b)
      if a.is_local ~= b.is_local then
        return a.is_local
      end
      return a.order < b.order
    end)
    for i = #list, ffi.C.MAX_BACKENDS_PER_FRONTEND + 1, -1 do
      list[i] = nil
    end
    return list
  end
  return set
end

-- frontend_entries(kind, plan, mode, targets) → the `frontends` of the
-- entries: every won frontend with every target at its mapped backend port.
-- Policies carry no session affinity and are never local-only.
function M.frontend_entries(kind, plan, mode, targets)
  local nat_type = M.KINDS[kind].nat_type
  local nat_mode = abi.nat_modes[nat_type][mode]
  local local_count = 0
  for _, target in ipairs(targets) do
    if target.is_local then
      local_count = local_count + 1
    end
  end
  local list = {}
  for _, frontend in ipairs(plan.frontends) do
    local value = ffi.new("struct service_value")
    value.service_id = plan.id
    value.total_count = #targets
    value.local_count = local_count
    value.affinity_seconds = 0
    value.nat_mode = nat_mode
    value.flags = 0
    local backends = {}
    for i, target in ipairs(targets) do
      backends[i] = abi.backend_value(target.address, frontend.backend_port, target.is_local)
    end
    list[#list + 1] = {
      key = abi.service_key(frontend.address, frontend.port, frontend.protocol, nat_type),
      value = value,
      backends = backends,
    }
  end
  return list
end

return M
