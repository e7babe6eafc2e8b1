-- An override of balancing.reconcile.service (docs/lua-hooks.md): a Service's
-- connections stay in this node's zone when it has a usable endpoint there.
--
-- Mount it as balancing/reconcile/service.lua under --lua-dir (the ConfigMap
-- of deploy/); preview it first with
--   balancing-agent plan --manifests DIR --lua-dir examples/overrides/prefer-zone/lua
--
-- Kubernetes' own zone preference (trafficDistribution PreferClose, zone
-- hints) applies only when every endpoint carries hints; this one needs
-- only the endpoints' `zone` and the node's topology.kubernetes.io/zone
-- label (the node context's `zone`). It wraps the built-in module: that
-- module picks the usable endpoints (ready, terminating fallback, local
-- first), and this one keeps the frontend's backends in the zone, if any.
-- Frontends restricted by internalTrafficPolicy Local are left as they are
-- (their backends are this node's already).
local bit = require("bit")
local ffi = require("ffi")
local abi = require("balancing.abi")

-- The built-in module, loaded from the installation (the agent and plan
-- provide balancing.host; a spec run from the source tree has lua/).
local host = package.loaded["balancing.host"]
local builtin_dir = type(host) == "table" and host.builtin_dir or "lua"
local builtin = dofile(builtin_dir .. "/balancing/reconcile/service.lua")

local LOCAL_ONLY = ffi.C.SERVICE_FLAG_LOCAL_ONLY
local BACKEND_LOCAL = ffi.C.BACKEND_FLAG_LOCAL

local M = {}

-- "address:port" of every endpoint of the Service in zone, from its
-- EndpointSlices (a backend's port is the slice's port for it).
local function in_zone(store, namespace, name, zone)
  local found = {}
  for _, slice in ipairs(store:endpoint_slices_of(namespace, name)) do
    for _, endpoint in ipairs(type(slice.endpoints) == "table" and slice.endpoints or {}) do
      if endpoint.zone == zone and type(endpoint.addresses) == "table" then
        for _, address in ipairs(endpoint.addresses) do
          for _, port in ipairs(type(slice.ports) == "table" and slice.ports or {}) do
            found[tostring(address) .. ":" .. tostring(port.port)] = true
          end
        end
      end
    end
  end
  return found
end

-- The frontend's backends in the zone, in their slot order (local first
-- stays local first); the frontend as it was when none is.
local function keep_zone(frontend, zone_backends)
  local kept, local_count = {}, 0
  for _, backend in ipairs(frontend.backends) do
    if zone_backends[abi.u32_to_ipv4(backend.address) .. ":" .. abi.ntohs(backend.port)] then
      kept[#kept + 1] = backend
      if bit.band(backend.flags, BACKEND_LOCAL) ~= 0 then
        local_count = local_count + 1
      end
    end
  end
  if #kept == 0 or #kept == #frontend.backends then
    return
  end
  -- the invariant apply relies on: the counts say what the slots hold
  frontend.backends = kept
  frontend.value.total_count = #kept
  frontend.value.local_count = local_count
end

function M.desired(store, ctx, namespace, name)
  local entries, rejections, notices = builtin.desired(store, ctx, namespace, name)
  if not ctx.zone or #entries.frontends == 0 then
    return entries, rejections, notices
  end
  local zone_backends = in_zone(store, namespace, name, ctx.zone)
  for _, frontend in ipairs(entries.frontends) do
    if bit.band(frontend.value.flags, LOCAL_ONLY) == 0 then
      keep_zone(frontend, zone_backends)
    end
  end
  return entries, rejections, notices
end

return M
