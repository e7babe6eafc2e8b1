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
--   * topology hints narrow the cluster set only: node hints
--     (trafficDistribution PreferSameNode) when every ready endpoint carries
--     them and one names this node, else zone hints when every ready
--     endpoint carries them and one names this node's zone;
--   * one backend per address and port; where a slice repeats one (a reused
--     pod IP, slices mid-update), a ready entry wins over a terminating one;
--   * addresses are read as kube-proxy reads them (leading zeros decimal).
--
-- Pure functions over decoded EndpointSlice objects: no store, no I/O.
--
-- They run for every port of every Service in a full reconcile, so they are
-- written for LuaJIT: no closure made per call (sort orders and filters are
-- module-level functions; LuaJIT cannot compile closure creation, and a hot
-- loop that makes one falls back to the interpreter), arrays sized up front,
-- and as little garbage as the rules allow — at 10,000 Services the
-- collector's passes over the whole heap are a large part of the cost.
local abi = require("balancing.abi")
local object = require("balancing.object")
local new_table = require("table.new") -- LuaJIT: a table sized up front

-- Up to this many records, a repeated address is found by scanning them, and
-- slot order is an insertion sort: cheaper than a set made (and collected)
-- per Service port, or table.sort calling back into Lua for every comparison.
local SMALL = 16

local M = {}

-- An endpoint record is an array, indexed by these names: a full reconcile
-- makes one per endpoint and Service port, and seven array slots take half
-- the memory (and half the collector's work) of seven named fields.
--   ADDRESS   the address text as the slice gives it
--   ORDER     the address as a number in host order, for sorting and as its
--             identity (abi.ipv4_sloppy_order: "10.244.1.05" is 10.244.1.5)
--   PORT      the backend port (the slice's port of the Service port's name)
--   IS_LOCAL  the endpoint runs on this node
--   READY     ready (unset counts as true)
--   FALLBACK  serving and terminating: what the terminating fallback uses
--   ZONES     the set of its zone hints, or nil
--   NODES     the set of its node hints, or nil
local ADDRESS, ORDER, PORT, IS_LOCAL, READY, FALLBACK, ZONES, NODES = 1, 2, 3, 4, 5, 6, 7, 8
M.ADDRESS, M.ORDER, M.PORT, M.IS_LOCAL, M.READY, M.FALLBACK, M.ZONES, M.NODES =
  ADDRESS, ORDER, PORT, IS_LOCAL, READY, FALLBACK, ZONES, NODES

local present = object.present

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

-- a Service port number (the checked Service's rule, for slice ports too)
local valid_port = require("balancing.service_spec").valid_port

-- The number a dotted IPv4 address reads as (host order), for sorting; nil
-- for text that is not one, even read as kube-proxy reads it. The strict
-- reading first: it is the common form and its parser is the faster.
local ipv4_order, ipv4_sloppy_order = abi.ipv4_order, abi.ipv4_sloppy_order
local function address_order(text)
  return ipv4_order(text) or ipv4_sloppy_order(text)
end

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

-- The set of names in a list of hints (hints.forZones or hints.forNodes:
-- {name = "..."} each), or nil when there is none.
local function hint_set(list)
  list = present(list)
  if type(list) ~= "table" then
    return nil
  end
  local set, any = {}, false
  for _, hint in ipairs(list) do
    local hint_name = type(hint) == "table" and present(hint.name)
    if type(hint_name) == "string" and hint_name ~= "" then
      set[hint_name] = true
      any = true
    end
  end
  return any and set or nil
end

-- an endpoint without conditions: every condition unset
local NO_CONDITIONS = {}

local slice_name = object.name

local function slice_name_less(a, b)
  return slice_name(a) < slice_name(b)
end

-- The record of one endpoint at one port, or nil when its address is not
-- IPv4 (even read as kube-proxy reads it).
local function endpoint_record(endpoint, port, node_name)
  local addresses = present(endpoint.addresses)
  local address = addresses and present(addresses[1])
  local order = address and address_order(address)
  if not order then
    return nil
  end
  local conditions = present(endpoint.conditions) or NO_CONDITIONS
  local hints = present(endpoint.hints)
  local ready, serving, terminating =
    condition(conditions, "ready"), condition(conditions, "serving"), condition(conditions, "terminating")
  -- unset ready and serving mean true, unset terminating false
  -- (the EndpointSlice API's rule, as kube-proxy reads it)
  return {
    address,                                                           -- ADDRESS
    order,                                                             -- ORDER
    port,                                                              -- PORT
    node_name ~= nil and present(endpoint.nodeName) == node_name,      -- IS_LOCAL
    ready == nil or ready == true,                                     -- READY
    (serving == nil or serving == true) and terminating == true,       -- FALLBACK
    hints and hint_set(hints.forZones) or nil,                         -- ZONES
    hints and hint_set(hints.forNodes) or nil,                         -- NODES
  }
end

-- The endpoints of the given slices for one Service port, as records (see
-- ADDRESS ... NODES above).
-- IPv4 slices only; one record per address and port: the first occurrence
-- (slices taken in name order, endpoints in slice order), unless a later one
-- is ready and it is not (a pod IP reused by a new pod while the old one
-- terminates must not hide the new one). An endpoint's first address is its
-- address, as in kube-proxy.
function M.from_slices(slices, port_name, protocol, node_name)
  port_name = M.port_name(port_name)
  protocol = M.protocol(protocol)
  local ordered = slices or {}
  if #ordered > 1 then
    ordered = {}
    for i, slice in ipairs(slices) do
      ordered[i] = slice
    end
    table.sort(ordered, slice_name_less)
  end

  local records, count, seen = nil, 0, nil
  for _, slice in ipairs(ordered) do
    local port = present(slice.addressType) == "IPv4" and slice_port(slice, port_name, protocol)
    local list = port and present(slice.endpoints)
    if type(list) == "table" then
      records = records or new_table(#list, 0)
      for _, endpoint in ipairs(list) do
        local record = endpoint_record(endpoint, port, node_name)
        if record then
          local order = record[ORDER]
          local at -- the position of an earlier record of the same address:port
          if seen then
            -- address and port as one number: exact in a double (2^48)
            at = seen[order * 0x10000 + port]
          else
            for i = 1, count do
              local earlier = records[i]
              if earlier[ORDER] == order and earlier[PORT] == port then
                at = i
                break
              end
            end
          end
          if at then
            if record[READY] and not records[at][READY] then
              records[at] = record
            end
          else
            count = count + 1
            records[count] = record
            if seen then
              seen[order * 0x10000 + port] = count
            elseif count > SMALL then
              seen = {}
              for i = 1, count do
                local r = records[i]
                seen[r[ORDER] * 0x10000 + r[PORT]] = i
              end
            end
          end
        end
      end
    end
  end
  return records or {}
end

-- An empty result, shared (never written to).
local NONE = setmetatable({}, { __newindex = function()
  error("balancing.reconcile.endpoints: NONE is read-only", 2)
end })

-- The records for which predicate(record, arg) holds: records itself when
-- that is all of them (the usual case: every endpoint ready), NONE when none
-- (the usual local set), else a new array. Callers only read the result.
local function filter(records, predicate, arg)
  local n = #records
  local kept = 0
  for i = 1, n do
    if predicate(records[i], arg) then
      kept = kept + 1
    end
  end
  if kept == n then
    return records
  end
  if kept == 0 then
    return NONE
  end
  local out = new_table(kept, 0)
  for i = 1, n do
    local record = records[i]
    if predicate(record, arg) then
      out[#out + 1] = record
    end
  end
  return out
end

local function serving_terminating(record)
  return record[FALLBACK]
end

-- ready, and hinted for this node or zone when topology applies
-- (topology = { NODES or ZONES, the node or zone name })
local function ready_in_topology(record, topology)
  if not record[READY] then
    return false
  end
  if topology == nil then
    return true
  end
  local hints = record[topology[1]]
  return hints ~= nil and hints[topology[2]] == true
end

local function local_ready(record)
  return record[IS_LOCAL] and record[READY]
end

local function local_serving_terminating(record)
  return record[IS_LOCAL] and record[FALLBACK]
end

-- What the cluster set is narrowed to, as kube-proxy decides it
-- (topologyModeFromHints): this node when every ready endpoint has node
-- hints and one names it (trafficDistribution PreferSameNode), else this
-- node's zone when every ready endpoint has zone hints and one names it;
-- nil: no narrowing. The result is { NODES | ZONES, name }, one table per
-- kind reused by every call (it is read at once, by filter). One pass over
-- the records for both kinds.
local BY_NODE, BY_ZONE = { NODES }, { ZONES }
local function topology(records, node_name, zone)
  local any_ready = false
  local all_node_hinted, for_node = true, false
  local all_zone_hinted, for_zone = true, false
  for i = 1, #records do
    local record = records[i]
    if record[READY] then
      any_ready = true
      local nodes, zones = record[NODES], record[ZONES]
      if not nodes then
        all_node_hinted = false
      elseif node_name and nodes[node_name] then
        for_node = true
      end
      if not zones then
        all_zone_hinted = false
      elseif zone and zones[zone] then
        for_zone = true
      end
    end
  end
  if not any_ready then
    return nil
  end
  if all_node_hinted and for_node then
    BY_NODE[2] = node_name
    return BY_NODE
  end
  if all_zone_hinted and for_zone then
    BY_ZONE[2] = zone
    return BY_ZONE
  end
  return nil
end

-- cluster, local_: the endpoints a Cluster frontend and an
-- internalTrafficPolicy Local frontend use.
function M.categorize(records, node_name, zone)
  local cluster = filter(records, ready_in_topology, topology(records, node_name, zone))
  if #cluster == 0 then
    -- no ready endpoint anywhere (topology never empties the set: it only
    -- applies when a ready endpoint is hinted for this node or zone)
    cluster = filter(records, serving_terminating)
  end

  local local_ = filter(records, local_ready)
  if #local_ == 0 then
    local_ = filter(records, local_serving_terminating)
  end
  return cluster, local_
end

-- Slot order: local first, then by address, then port (address:port pairs
-- are unique among records, so this is a total order and any sort gives it).
local function slot_less(a, b)
  if a[IS_LOCAL] ~= b[IS_LOCAL] then
    return a[IS_LOCAL]
  end
  if a[ORDER] ~= b[ORDER] then
    return a[ORDER] < b[ORDER]
  end
  return a[PORT] < b[PORT]
end

-- Slot order: this node's endpoints first, then the others; each group by
-- address, then port. Returns the records in that order — the array itself
-- when it is in that order already (slices usually list their endpoints by
-- address), else a new one — and the number of local ones.
function M.slot_order(records)
  local n = #records
  local local_count, in_order = 0, true
  for i = 1, n do
    local record = records[i]
    if record[IS_LOCAL] then
      local_count = local_count + 1
    end
    if i > 1 and in_order and not slot_less(records[i - 1], record) then
      in_order = false
    end
  end
  if in_order then
    return records, local_count
  end
  local ordered = new_table(n, 0)
  for i = 1, n do
    ordered[i] = records[i]
  end
  if n > SMALL then
    table.sort(ordered, slot_less)
  else
    for i = 2, n do
      local record = ordered[i]
      local j = i - 1
      while j >= 1 and slot_less(record, ordered[j]) do
        ordered[j + 1] = ordered[j]
        j = j - 1
      end
      ordered[j + 1] = record
    end
  end
  return ordered, local_count
end

return M
