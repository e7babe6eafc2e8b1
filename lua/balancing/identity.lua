-- The annotations agents write (API.md "Annotations"): each agent its own
-- node's balancing.elf.io/nodeId (non-zero, unique in the cluster) and
-- balancing.elf.io/nodeProxyIpv4 (its first InternalIP, when missing), and
-- any agent a policy's balancing.elf.io/serviceId when it has none.
--
--   local patch = identity.node_patch(store, node_name)          -- or nil
--   local patch = identity.policy_patch(store, kind, name)       -- or nil
--
-- Pure: from the store, the JSON merge patch to send, or nil when nothing is
-- to be written. The patch carries the object's metadata.resourceVersion,
-- which the API server takes as a precondition: two agents racing on one
-- object get one success and one 409, and the loser, with the object it
-- then reads, finds nothing left to write. Two agents racing on two objects
-- may pick one number for both; node.lua and the ids registry then give it
-- to one (the node whose name sorts first, the older policy), and the other
-- agent's next call here asks for another number. Numbers are derived from
-- the object's name, so that an agent restarted mid-way asks for the same
-- one again.
local ids = require("balancing.ids")
local node = require("balancing.reconcile.node")
local object = require("balancing.object")

local M = {}

local present, field = object.present, object.field

local NODE_ID_MIN, NODE_ID_MAX = 1, 0xFFFFFFFF

-- Node ID → the node that holds it: valid, and not lost to a node whose name
-- sorts first (node.lua's rule).
local function node_ids(store)
  local holder = {}
  for _, node_obj in ipairs(store:list("Node")) do -- by name: the first keeps an ID
    local id = node.node_id(node_obj)
    if id and not holder[id] then
      holder[id] = object.name(node_obj)
    end
  end
  return holder
end

-- A free node ID for node_name: from a hash of its name, probed past the IDs
-- other nodes hold.
local function free_node_id(holder, node_name)
  local span = NODE_ID_MAX - NODE_ID_MIN + 1
  local id = NODE_ID_MIN + ids.hash("node/" .. node_name) % span
  while holder[id] and holder[id] ~= node_name do
    id = id + 1
    if id > NODE_ID_MAX then
      id = NODE_ID_MIN
    end
  end
  return id
end

local function patch_of(obj, annotations)
  return { metadata = { resourceVersion = field(obj, "metadata", "resourceVersion"), annotations = annotations } }
end

-- node_patch(store, node_name) → merge patch | nil: nodeId when missing,
-- invalid, or held by a node whose name sorts first; nodeProxyIpv4 when
-- missing and the node has an IPv4 InternalIP. nil when the store has no
-- such Node (nothing to patch yet) or nothing is missing.
function M.node_patch(store, node_name)
  local node_obj = store:node(node_name)
  if not node_obj then
    return nil
  end
  local annotations = {}
  local id = node.node_id(node_obj)
  local holder = node_ids(store)
  if not id or holder[id] ~= node_name then
    annotations[node.NODE_ID_ANNOTATION] = string.format("%d", free_node_id(holder, node_name))
  end
  if field(node_obj, "metadata", "annotations", node.PROXY_IP_ANNOTATION) == nil then
    local internal_ip = node.first_internal_ip(node_obj)
    if internal_ip then
      annotations[node.PROXY_IP_ANNOTATION] = internal_ip
    end
  end
  if next(annotations) == nil then
    return nil
  end
  return patch_of(node_obj, annotations)
end

-- policy_patch(store, kind, name) → merge patch | nil: a serviceId for a
-- policy without one (the provisional ID it has now, so that programmed
-- entries keep their ID when it is written), or whose annotation is invalid
-- or held by an older policy (a free ID).
function M.policy_patch(store, kind, name)
  local policy = store:get(kind, "", name)
  if not policy then
    return nil
  end
  local id, provisional = store:policy_id(kind, name)
  if id and not provisional then
    return nil -- annotated, and it holds the ID
  end
  if not id then
    id = store.ids:free_policy_id(kind, name)
    if not id then
      return nil -- every ID is taken: nothing can be written
    end
  end
  return patch_of(policy, { [ids.ANNOTATION] = string.format("%d", id) })
end

-- The policies policy_patch has something to write for, by kind then name,
-- and (a second list, in the same order) those patches.
function M.policies_to_patch(store)
  local out, patches = {}, {}
  for _, kind in ipairs({ "LocalRedirectPolicy", "BalancingPolicy" }) do
    for _, policy in ipairs(store:list(kind)) do
      local name = present(policy.metadata.name)
      local patch = M.policy_patch(store, kind, name)
      if patch then
        out[#out + 1] = { kind = kind, name = name }
        patches[#out] = patch
      end
    end
  end
  return out, patches
end

return M
