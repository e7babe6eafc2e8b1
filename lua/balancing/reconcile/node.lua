-- The node side: the context every reconcile round starts from (who this
-- node is), and the node tables (map_node_ip, map_node_proxy_ip).
--
--   local ctx = node.context(store, node_name, out_cluster)
--   local entries, rejections, notices = node.desired(store, ctx)
--
-- Pure: the same store gives the same context and entries, in the same order.
--
-- A Node without the balancing.elf.io/nodeId annotation is not at fault: each
-- agent writes it for its own node when missing (API.md "Annotations"), so on
-- a fresh cluster no node has one yet. Such a node has node ID 0 in
-- map_node_ip (its NodePorts still resolve) and no map_node_proxy_ip entry
-- until the annotation appears. Only an ID that is present and invalid, or
-- that an earlier node already holds, is reported.
local ffi = require("ffi")
local abi = require("balancing.abi")
local object = require("balancing.object")

local M = {}

M.OWNER = "node"
M.NODE_ID_ANNOTATION = "balancing.elf.io/nodeId"
M.PROXY_IP_ANNOTATION = "balancing.elf.io/nodeProxyIpv4"
M.ZONE_LABEL = "topology.kubernetes.io/zone"

local MAX_NODE_ID = 0xFFFFFFFF

local present, field = object.present, object.field
local node_name = object.name

-- One of the node's annotations, or nil when it is absent.
local function annotation(node_obj, name)
  return field(node_obj, "metadata", "annotations", name)
end

local function is_ipv4(text)
  return type(text) == "string" and abi.ipv4_to_u32(text) ~= nil
end

-- Every IPv4 address of status.addresses, in order, without repeats; each
-- as { type = "InternalIP"|..., address = "..." }.
local function ipv4_addresses(node_obj)
  local out, seen = {}, {}
  for _, entry in ipairs(field(node_obj, "status", "addresses") or {}) do
    local address = type(entry) == "table" and present(entry.address)
    if is_ipv4(address) and not seen[address] then
      seen[address] = true
      out[#out + 1] = { type = present(entry.type), address = address }
    end
  end
  return out
end

-- The node's ID from its annotation: a decimal uint32, non-zero. Returns
-- the number; nil when the annotation is missing (not yet written: no
-- reason); nil and the reason naming the annotation when it is invalid.
function M.node_id(node_obj)
  local text = annotation(node_obj, M.NODE_ID_ANNOTATION)
  if text == nil then
    return nil
  end
  local value = type(text) == "string" and text:match("^%d+$") and tonumber(text)
  if not value or value == 0 or value > MAX_NODE_ID then
    return nil, string.format("metadata.annotations[%s]: %q is not a non-zero decimal uint32",
      M.NODE_ID_ANNOTATION, tostring(text))
  end
  return value
end

-- The node's first InternalIP that is IPv4, or nil.
function M.first_internal_ip(node_obj)
  for _, entry in ipairs(ipv4_addresses(node_obj)) do
    if entry.type == "InternalIP" then
      return entry.address
    end
  end
  return nil
end

-- The node's proxy IP: the nodeProxyIpv4 annotation, else its first
-- InternalIP. Returns ip (or nil when it has neither), and a second value
-- naming the annotation when it was present but not an IPv4 address (the
-- InternalIP is used then).
function M.proxy_ip(node_obj)
  local annotated = annotation(node_obj, M.PROXY_IP_ANNOTATION)
  if annotated ~= nil then
    if is_ipv4(annotated) then
      return annotated
    end
    return M.first_internal_ip(node_obj), string.format(
      "metadata.annotations[%s]: %q is not an IPv4 address, using the first InternalIP",
      M.PROXY_IP_ANNOTATION, tostring(annotated))
  end
  return M.first_internal_ip(node_obj)
end

function M.context(store, name, out_cluster)
  local ctx = {
    node_name = name,
    out_cluster = out_cluster and true or false,
    labels = {},
    zone = nil,
    addresses = {},
    node_id = 0,
  }
  local node_obj = name and store:node(name)
  if not node_obj then
    return ctx
  end
  local labels = field(node_obj, "metadata", "labels")
  for k, v in pairs(type(labels) == "table" and labels or {}) do
    ctx.labels[k] = v
  end
  local zone = present(ctx.labels[M.ZONE_LABEL])
  if type(zone) == "string" and zone ~= "" then
    ctx.zone = zone
  end
  for _, entry in ipairs(ipv4_addresses(node_obj)) do
    ctx.addresses[entry.address] = true
  end
  ctx.node_id = M.node_id(node_obj) or 0
  return ctx
end

local function by_sort(a, b)
  return a.sort < b.sort
end

-- The { key, value, sort } entries as { key, value }, in sort order.
local function in_sort_order(list)
  table.sort(list, by_sort)
  local out = {}
  for i, e in ipairs(list) do
    out[i] = { key = e.key, value = e.value }
  end
  return out
end

function M.desired(store, ctx) -- luacheck: no unused args
  local entries = { owner = M.OWNER, frontends = {} }
  local rejections, notices = {}, {}
  local function reject(name, reason)
    rejections[#rejections + 1] = { kind = "Node", name = name, reason = reason }
  end

  -- by name (store:list's order): the node whose name sorts first wins an
  -- address or an ID claimed twice
  local nodes = store:list("Node")

  -- node IDs first: an ID two nodes claim belongs to the first one only
  local ids, id_owner = {}, {}
  for _, node_obj in ipairs(nodes) do
    local name = node_name(node_obj)
    local id, err = M.node_id(node_obj)
    if err then
      reject(name, err)
    elseif not id then
      -- the usual state of a fresh cluster: each agent writes its own node's
      notices[#notices + 1] = { level = "debug",
        message = "node has no ID yet: node ID 0 in map_node_ip, no proxy IP entry",
        fields = { node = name, annotation = M.NODE_ID_ANNOTATION } }
    elseif id_owner[id] then
      reject(name, string.format("metadata.annotations[%s]: %d is already the ID of node %s",
        M.NODE_ID_ANNOTATION, id, id_owner[id]))
    else
      id_owner[id] = name
      ids[name] = id
    end
  end

  local node_ips, address_owner = {}, {}
  local proxy_ips = {}
  for _, node_obj in ipairs(nodes) do
    local name = node_name(node_obj)
    for _, entry in ipairs(ipv4_addresses(node_obj)) do
      if not address_owner[entry.address] then
        address_owner[entry.address] = name
        local key = ffi.new("struct node_ip_key")
        key.address = abi.ipv4_to_u32(entry.address)
        local value = ffi.new("struct node_ip_value")
        value.node_id = ids[name] or 0
        node_ips[#node_ips + 1] = { key = key, value = value, sort = abi.ipv4_order(entry.address) }
      end
    end

    local id = ids[name]
    if id then
      local ip, problem = M.proxy_ip(node_obj)
      if problem then
        reject(name, problem)
      end
      if ip then
        local key = ffi.new("struct node_proxy_ip_key")
        key.node_id = id
        local value = ffi.new("struct node_proxy_ip_value")
        value.address = abi.ipv4_to_u32(ip)
        proxy_ips[#proxy_ips + 1] = { key = key, value = value, sort = id }
      else
        reject(name, string.format("metadata.annotations[%s]: missing and status.addresses has no IPv4 InternalIP",
          M.PROXY_IP_ANNOTATION))
      end
    end
  end

  entries.node_ips = in_sort_order(node_ips)
  entries.node_proxy_ips = in_sort_order(proxy_ips)
  return entries, rejections, notices
end

return M
