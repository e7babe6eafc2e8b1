-- Which endpoints of a Service port a frontend may resolve to on this node.
--
-- The categorisation follows kube-proxy (pkg/proxy/topology.go,
-- CategorizeEndpoints) so that a Service behaves the same whether kube-proxy
-- or Balancing translates it:
--   * usable endpoints are the ready ones; when there is none, the serving and
--     terminating ones (a rolling update that removed every ready pod still
--     has somewhere to go) — and never an endpoint that is neither;
--   * the cluster set and the local set fall back independently: a Local
--     policy uses this node's terminating endpoints when this node has no
--     ready one, even if other nodes have ready ones;
--   * topology hints narrow the cluster set only, only when every ready
--     endpoint carries zone hints and at least one names this node's zone.
--
-- Pure functions over decoded EndpointSlice objects: no store, no I/O.
local abi = require("balancing.abi")

local M = {}

-- lua-cjson decodes JSON null as a userdata sentinel; treat it as absent.
local function present(v)
  if v == nil or type(v) == "userdata" then
    return nil
  end
  return v
end

-- A port name as the API compares it: absent, null and "" are the same
-- (a Service with a single port may leave it unnamed on both sides).
function M.port_name(name)
  name = present(name)
  if name == nil then
    return ""
  end
  return name
end

function M.protocol(protocol)
  return present(protocol) or "TCP"
end

local function valid_port(port)
  return type(port) == "number" and port >= 1 and port <= 65535 and port % 1 == 0
end
M.valid_port = valid_port

-- The number a dotted IPv4 address reads as (host order), for sorting.
local function address_order(text)
  local a, b, c, d = text:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  return ((tonumber(a) * 256 + tonumber(b)) * 256 + tonumber(c)) * 256 + tonumber(d)
end
M.address_order = address_order

-- The port a slice serves for one Service port: the slice port of the same
-- name and protocol. The EndpointSlice controller has already resolved a
-- named or numeric targetPort into it, per pod.
local function slice_port(slice, name, protocol)
  for _, p in ipairs(present(slice.ports) or {}) do
    if M.port_name(p.name) == name and M.protocol(p.protocol) == protocol and valid_port(present(p.port)) then
      return p.port
    end
  end
  return nil
end

local function condition(conditions, field)
  return present(conditions[field])
end

local function zone_hints(endpoint)
  local hints = present(endpoint.hints)
  local zones = hints and present(hints.forZones)
  if not zones then
    return nil
  end
  local set, any = {}, false
  for _, zone in ipairs(zones) do
    local zone_name = type(zone) == "table" and present(zone.name)
    if type(zone_name) == "string" and zone_name ~= "" then
      set[zone_name] = true
      any = true
    end
  end
  return any and set or nil
end

local function slice_name(slice)
  local meta = present(slice.metadata) or {}
  return present(meta.name) or ""
end

-- The endpoints of the given slices for one Service port, as records
--   { address, order, port, node_name, is_local, ready, serving, terminating, zones }
-- (order: the address as a number, for sorting)
-- IPv4 slices only; an address is kept once (the first occurrence, slices
-- taken in name order, endpoints in slice order); an endpoint's first
-- address is its address, as in kube-proxy.
function M.from_slices(slices, port_name, protocol, node_name)
  port_name = M.port_name(port_name)
  protocol = M.protocol(protocol)
  local ordered = {}
  for _, slice in ipairs(slices or {}) do
    ordered[#ordered + 1] = slice
  end
  table.sort(ordered, function(a, b)
    return slice_name(a) < slice_name(b)
  end)

  local records, seen = {}, {}
  for _, slice in ipairs(ordered) do
    local port = present(slice.addressType) == "IPv4" and slice_port(slice, port_name, protocol)
    if port then
      for _, endpoint in ipairs(present(slice.endpoints) or {}) do
        local addresses = present(endpoint.addresses)
        local address = addresses and present(addresses[1])
        if address and not seen[address] and abi.ipv4_to_u32(address) then
          seen[address] = true
          local conditions = present(endpoint.conditions) or {}
          local ready, serving, terminating =
            condition(conditions, "ready"), condition(conditions, "serving"), condition(conditions, "terminating")
          local endpoint_node = present(endpoint.nodeName)
          records[#records + 1] = {
            address = address,
            order = address_order(address),
            port = port,
            node_name = endpoint_node,
            is_local = node_name ~= nil and endpoint_node == node_name,
            -- unset ready and serving mean true, unset terminating false
            -- (the EndpointSlice API's rule, as kube-proxy reads it)
            ready = ready == nil or ready == true,
            serving = serving == nil or serving == true,
            terminating = terminating == true,
            zones = zone_hints(endpoint),
          }
        end
      end
    end
  end
  return records
end

local function filter(records, predicate)
  local out = {}
  for _, record in ipairs(records) do
    if predicate(record) then
      out[#out + 1] = record
    end
  end
  return out
end

local function serving_terminating(record)
  return record.serving and record.terminating
end

-- The zone the cluster set is narrowed to, or nil: only when every ready
-- endpoint has zone hints and one of them is for this node's zone.
function M.topology_zone(records, zone)
  local any_ready, all_hinted, for_zone = false, true, false
  for _, record in ipairs(records) do
    if record.ready then
      any_ready = true
      if not record.zones then
        all_hinted = false
      elseif zone and record.zones[zone] then
        for_zone = true
      end
    end
  end
  if any_ready and all_hinted and for_zone then
    return zone
  end
  return nil
end

-- cluster, local_: the endpoints a Cluster-policy frontend and a
-- Local-policy frontend use.
function M.categorize(records, zone)
  local topology = M.topology_zone(records, zone)
  local cluster = filter(records, function(r)
    return r.ready and (topology == nil or r.zones[topology] == true)
  end)
  if #cluster == 0 then
    -- no ready endpoint anywhere (topology never empties the set: it only
    -- applies when a ready endpoint is hinted for this zone)
    cluster = filter(records, serving_terminating)
  end

  local local_ = filter(records, function(r)
    return r.is_local and r.ready
  end)
  if #local_ == 0 then
    local_ = filter(records, function(r)
      return r.is_local and serving_terminating(r)
    end)
  end
  return cluster, local_
end

-- Slot order: this node's endpoints first, then the others; each group by
-- address, then port. Returns the ordered array and the number of local ones.
function M.slot_order(records)
  local ordered = {}
  for i, record in ipairs(records) do
    ordered[i] = record
  end
  table.sort(ordered, function(a, b)
    if a.is_local ~= b.is_local then
      return a.is_local
    end
    if a.order ~= b.order then
      return a.order < b.order
    end
    return a.port < b.port
  end)
  local local_count = 0
  for _, record in ipairs(ordered) do
    if record.is_local then
      local_count = local_count + 1
    end
  end
  return ordered, local_count
end

return M
