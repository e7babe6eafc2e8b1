-- A Service becomes map entries here: each frontend the store's checked
-- Service claims (balancing.service_spec: ClusterIPs, load balancer ingress
-- IPs, external IPs, the NodePort on every node IP) that no older Service
-- holds, with the backend slots of its endpoints as this node sees them.
--
--   local entries, rejections, notices = service.desired(store, ctx, namespace, name)
--
-- Pure: the same store and node context give the same entries, in the same
-- order. Rules are those of API.md "Service"; endpoint selection (ready,
-- terminating fallback, local, topology) is in reconcile/endpoints.lua.
local ffi = require("ffi")
local abi = require("balancing.abi")
local endpoints = require("balancing.reconcile.endpoints")
local service_owner = require("balancing.store").service_owner
local new_table = require("table.new") -- LuaJIT: a table sized up front

local M = {}

local NAT_TYPE = abi.nat_types.service
local MODES = abi.nat_modes.service
local MAX_BACKENDS = ffi.C.MAX_BACKENDS_PER_FRONTEND

local service_value_t = ffi.typeof("struct service_value")
local backend_value_t = ffi.typeof("struct backend_value")
local BACKEND_FLAG_LOCAL = ffi.C.BACKEND_FLAG_LOCAL
local SERVICE_FLAG_LOCAL_ONLY = ffi.C.SERVICE_FLAG_LOCAL_ONLY
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
  value.flags = local_only and SERVICE_FLAG_LOCAL_ONLY or 0
  return value
end

local function reject(rejections, full_name, reason)
  rejections[#rejections + 1] = { kind = "Service", name = full_name, reason = reason }
end

-- The slot orders of one service port, computed once for all its frontends
-- and kept in slots (one flat array per Service, four places per port: no
-- table per port): every usable endpoint (what a Cluster frontend uses) and
-- its local count, this node's endpoints (what an internalTrafficPolicy Local
-- ClusterIP frontend uses) and their count.
local function port_slots(slots, slices, port, ctx)
  local at = port.index * 4
  if slots[at] == nil then
    local records = endpoints.from_slices(slices, port.name, port.protocol, ctx.node_name)
    local cluster, local_ = endpoints.categorize(records, ctx.node_name, ctx.zone)
    slots[at - 3], slots[at - 2] = endpoints.slot_order(cluster)
    slots[at - 1], slots[at] = endpoints.slot_order(local_)
  end
  return at
end

-- One frontend entry over the endpoints in slot order.
local function frontend_entry(spec, service_id, frontend, local_only, ordered, local_count, rejections, full_name)
  local count = #ordered
  if count > MAX_BACKENDS then
    reject(rejections, full_name, string.format("%s: %d backends, only the first %d are programmed",
      frontend.path, count, MAX_BACKENDS))
    count, local_count = MAX_BACKENDS, math.min(local_count, MAX_BACKENDS)
  end
  local backends = new_table(count, 0)
  for i = 1, count do
    backends[i] = backend_value(ordered[i])
  end
  return {
    key = abi.service_key(frontend.address, frontend.port, frontend.port_record.protocol, NAT_TYPE),
    value = service_value(service_id, frontend.mode, spec.affinity, local_only, count, local_count),
    backends = backends,
  }
end

local NO_NOTICES = setmetatable({}, { __newindex = function()
  error("balancing.reconcile.service: NO_NOTICES is read-only", 2)
end })

function M.desired(store, ctx, namespace, name)
  local rejections, frontends = {}, {}
  local entries = { owner = service_owner(namespace, name), frontends = frontends }
  local spec, service_id = store:service_spec(namespace, name)
  if not spec then
    return entries, rejections, NO_NOTICES -- gone
  end
  if spec.skip then
    -- not this agent's to program (ExternalName, left to another proxy, no
    -- IPv4 ClusterIP): the notice says which
    return entries, rejections, spec.notices
  end
  local full_name = namespace .. "/" .. name
  for _, reason in ipairs(spec.problems) do
    reject(rejections, full_name, reason)
  end
  if not service_id then
    reject(rejections, full_name, "metadata: no service ID")
    return entries, rejections, spec.notices
  end

  ctx = ctx or {}
  local slices = store:endpoint_slices_of(namespace, name)
  local slots = {} -- see port_slots
  for _, frontend in ipairs(spec.frontends) do
    local winner = store:older_service_claiming(frontend.key, namespace, name)
    if winner then
      reject(rejections, full_name, string.format("%s: frontend %s is already programmed by older Service %s/%s",
        frontend.path, frontend.key, winner.metadata.namespace, winner.metadata.name))
    else
      local at = port_slots(slots, slices, frontend.port_record, ctx)
      -- externalTrafficPolicy governs traffic arriving from outside the
      -- node, which socket hooks never see: only internalTrafficPolicy
      -- restricts (its ClusterIP frontends), as kube-proxy treats pods and
      -- host processes
      local local_only = spec.internal_local and frontend.mode == "ClusterIP"
      if local_only then
        frontends[#frontends + 1] = frontend_entry(spec, service_id, frontend, true, slots[at - 1], slots[at],
          rejections, full_name)
      else
        frontends[#frontends + 1] = frontend_entry(spec, service_id, frontend, false, slots[at - 3], slots[at - 2],
          rejections, full_name)
      end
    end
  end
  return entries, rejections, spec.notices
end

return M
