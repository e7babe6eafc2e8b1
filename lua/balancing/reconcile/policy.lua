-- The rules LocalRedirectPolicy and BalancingPolicy share (API.md, "PortInfo",
-- "Both policies") once the store has checked a policy's spec
-- (balancing.policy_spec): turning what its frontend matcher claims into
-- address:port/protocol frontends with their backend port, the usable-pod
-- test, where a policy applies, which of two policies of one kind owns a
-- frontend, and the flow of a reconcile (desired). reconcile/localredirect.lua
-- and reconcile/balancing.lua only add their backends.
--
--   local entries, rejections, notices = policy.desired(kind, store, ctx, name, backends)
--
-- Pure: the same store and context give the same answer, in the same order;
-- it reads the spec, the claim and the ID the store settled, and changes
-- nothing.
--
-- Choices where API.md is silent (each has a spec in reconcile_policy_spec.lua):
--  * a frontend port without a backend port of its name is not programmed
--    (the others are), and a serviceMatcher whose Service does not exist (yet)
--    programs nothing: neither makes the spec invalid;
--  * a same-kind conflict is decided per frontend and per node: the older
--    policy wins a frontend where it would program it (valid spec and ID,
--    applies to this node; whether it has backends right now does not count,
--    so pod churn never moves a frontend between policies); the younger one
--    loses only the frontends they share, keeps the others, and gets one
--    rejection per frontend lost.
local ffi = require("ffi")
local abi = require("balancing.abi")
local object = require("balancing.object")
local ids = require("balancing.ids")
local store_module = require("balancing.store")

local M = {}

M.KINDS = {
  LocalRedirectPolicy = { nat_type = "localRedirect" },
  BalancingPolicy = { nat_type = "balancing" },
}

local present, field = object.present, object.field
local policy_owner, frontend_key = store_module.policy_owner, store_module.frontend_key

-- "10.0.0.2" -> 0x0A000002, for sorting addresses as numbers (every address
-- here is checked IPv4 text already).
local address_order = abi.ipv4_order

-- Whether a checked policy applies on this node. A LocalRedirectPolicy never
-- applies outside the cluster: such a host runs no pods, so no local backend.
-- applies(kind, spec, ctx) → true, or false and why not (a note: the
-- policy is valid, only not for this node).
function M.applies(kind, spec, ctx)
  if ctx.out_cluster and kind == "LocalRedirectPolicy" then
    return false, "not programmed: a LocalRedirectPolicy has no local backends outside the cluster"
  end
  if ctx.out_cluster and not spec.enable_out_cluster then
    return false, "not programmed: this agent runs outside the cluster and enableOutCluster is not set"
  end
  if spec.node_selector and not spec.node_selector:matches(ctx.labels or {}) then
    return false, string.format("not programmed: nodeLabelSelector does not select node %s",
      tostring(ctx.node_name))
  end
  return true
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

local function frontend_less(a, b)
  if a.order ~= b.order then
    return a.order < b.order
  end
  if a.port ~= b.port then
    return a.port < b.port
  end
  return a.protocol < b.protocol
end

-- frontends(store, kind, name, spec) → the frontends a checked policy
-- programs: what its matcher claims (store:policy_claim) where the port maps
-- to a backend port, each once, sorted by address, port, protocol:
--   { { address = "10.96.0.10", port = 53, protocol = "UDP", key = "10.96.0.10:53/UDP",
--       backend_port = 5353 }, ... }
function M.frontends(store, kind, name, spec)
  local claim = store:policy_claim(kind, name)
  local mapped = map_ports(claim.ports, spec.backend.ports)
  local list, seen = {}, {}
  for _, address in ipairs(claim.addresses) do
    for i, port in ipairs(claim.ports) do
      local key = frontend_key(address, port.port, port.protocol)
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
local function claimed_keys(store, ctx, kind, name)
  local spec = store:policy_spec(kind, name)
  if not spec or not M.applies(kind, spec, ctx) or not store:policy_id(kind, name) then
    return nil
  end
  local keys = {}
  for _, frontend in ipairs(M.frontends(store, kind, name, spec)) do
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
        keys_of[other_name] = claimed_keys(store, ctx, kind, other_name) or false
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

-- prepare(kind, store, ctx, name) → plan, rejections, note. plan is nil when
-- the policy programs nothing on this node (gone, invalid, or not for this
-- node: the note says why); else { policy, spec, id, frontends } with the
-- frontends it wins.
function M.prepare(kind, store, ctx, name)
  local policy = store:get(kind, "", name)
  if not policy then
    return nil, {}
  end
  local spec, reason = store:policy_spec(kind, name)
  if not spec then
    return nil, { { kind = kind, name = name, reason = reason } }
  end
  local id, err = store:policy_id(kind, name)
  if not id then
    return nil, { { kind = kind, name = name, reason = err } }
  end
  local applies, note = M.applies(kind, spec, ctx)
  if not applies then
    return nil, {}, note
  end
  local frontends, rejections = M.resolve_conflicts(store, ctx, kind, policy,
    M.frontends(store, kind, name, spec))
  return { policy = policy, spec = spec, id = id, frontends = frontends }, rejections
end

-- desired(kind, store, ctx, name, backends) → entries, rejections, notices:
-- the flow both kinds share. backends(store, ctx, plan, entries) gives the
-- NAT mode and the targets (M.targets().sorted()) of the won frontends, or
-- nil and why when the policy programs nothing right now; it may add to
-- entries (loop_pods). notices ({ message, level = "debug" }) say why a valid
-- policy programs nothing on this node (not for this node, no local backend):
-- no error, so logged at debug only, and what `inspect traceMapData` shows.
-- Like every reconcile module it returns what it has to say and never logs
-- (reconcile is pure).
local NO_NOTICES = setmetatable({}, { __newindex = function()
  error("balancing.reconcile.policy: NO_NOTICES is read-only", 2)
end })

local function note(message)
  return { { message = message, level = "debug" } }
end

function M.desired(kind, store, ctx, name, backends)
  local entries = M.empty_entries(kind, name)
  local plan, rejections, why_not = M.prepare(kind, store, ctx, name)
  if not plan then
    return entries, rejections, why_not and note(why_not) or NO_NOTICES
  end
  if #plan.frontends == 0 then
    -- (a frontend lost to an older policy is a rejection already)
    return entries, rejections, #rejections == 0 and note("not programmed: no frontend "
      .. "(the frontend's Service is missing or has no address this agent serves)") or NO_NOTICES
  end
  local mode, targets = backends(store, ctx, plan, entries)
  if not mode then
    return entries, rejections, note(targets or "not programmed: no backend")
  end
  entries.frontends = M.frontend_entries(kind, plan, mode, targets)
  return entries, rejections, NO_NOTICES
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
