-- The full reconcile that scripts/bench/reconcile and scripts/bench/plan
-- time: every object of a generated cluster (reconcile_cluster.lua) into a
-- new store, the node context, and `desired` for every owner the load
-- marked dirty, through the reconcile modules' public functions.
--
--   local full = require("full_reconcile")
--   local seconds, store, timings = full.run(cluster[, { back_to_back = true, without_gc = true }])
--   full.reconcile_owner(store, ctx, owner)   -- one owner, as a change does
local store_module = require("balancing.store")
local node = require("balancing.reconcile.node")
local service = require("balancing.reconcile.service")
local localredirect = require("balancing.reconcile.localredirect")
local balancing = require("balancing.reconcile.balancing")
local timing = require("timing")

local M = {}

M.NODE_NAME = "node-1"

local now = timing.now

function M.reconcile_owner(store, ctx, owner)
  local kind, rest = owner:match("^([^/]+)/(.*)$")
  if owner == "node" then
    node.desired(store, ctx)
  elseif kind == "service" then
    local namespace, name = rest:match("^([^/]+)/(.*)$")
    service.desired(store, ctx, namespace, name)
  elseif kind == "localRedirect" then
    localredirect.desired(store, ctx, rest)
  elseif kind == "balancing" then
    balancing.desired(store, ctx, rest)
  else
    error("unknown owner " .. owner)
  end
end
local reconcile_owner = M.reconcile_owner

-- The module (of the breakdown) that reconciles an owner.
local MODULE_OF_KIND = { service = "service", localRedirect = "localredirect", balancing = "balancing" }
local function module_of(owner)
  if owner == "node" then
    return "node"
  end
  return MODULE_OF_KIND[owner:match("^([^/]+)/")] or error("unknown owner " .. owner)
end

-- The owners a load of the cluster marks dirty — every owner: each
-- Service, each policy, the node tables — in the order their objects come
-- (as a list from the API server would bring them), grouped by the module
-- that reconciles them so that each module's time is taken once around its
-- group (a clock read per owner would add its own cost to the per-owner
-- work). Made before the timing: ordering owners is not reconcile work.
M.MODULES = { "service", "localredirect", "balancing", "node" }
local MODULES = M.MODULES
local function owners_by_module(cluster)
  local groups = { service = {}, localredirect = {}, balancing = {}, node = { store_module.NODE_OWNER } }
  for _, obj in ipairs(cluster.objects) do
    local owner
    if obj.kind == "Service" then
      owner = store_module.service_owner(obj.metadata.namespace, obj.metadata.name)
    elseif obj.kind == "LocalRedirectPolicy" or obj.kind == "BalancingPolicy" then
      owner = store_module.policy_owner(obj.kind, obj.metadata.name)
    end
    if owner then
      local group = groups[module_of(owner)]
      group[#group + 1] = owner
    end
  end
  return groups
end

-- Whether the dirty set is exactly the owners of the groups.
local function same_owners(dirty, groups)
  local n = 0
  for _, module_name in ipairs(MODULES) do
    for _, owner in ipairs(groups[module_name]) do
      if not dirty[owner] then
        return false
      end
      n = n + 1
    end
  end
  for _ in pairs(dirty) do
    n = n - 1
  end
  return n == 0
end

-- One full reconcile from empty, after a full collection (unless
-- opts.back_to_back: then on the heap as the last one left it); with
-- opts.without_gc, the collector stopped. Returns total seconds, the store,
-- and a breakdown { load, context, service, localredirect, balancing, node,
-- live_mb (the heap when it starts), allocated_mb (what it allocated, when
-- the collector is stopped) }.
function M.run(cluster, opts)
  opts = opts or {}
  local groups = owners_by_module(cluster)
  if not opts.back_to_back then
    collectgarbage()
    collectgarbage()
  end
  local timings = { service = 0, localredirect = 0, balancing = 0, node = 0 }
  local heap_before = collectgarbage("count")
  timings.live_mb = heap_before / 1024
  if opts.without_gc then
    collectgarbage("stop")
  end
  local started = now()
  local store = store_module.new({ node_name = M.NODE_NAME })
  for _, obj in ipairs(cluster.objects) do
    assert(store:upsert(obj))
  end
  local dirty = store:take_dirty()
  local loaded = now()
  timings.load = loaded - started
  local ctx = node.context(store, M.NODE_NAME, false)
  local mark = now()
  timings.context = mark - loaded
  for _, module_name in ipairs(MODULES) do
    mark = now()
    for _, owner in ipairs(groups[module_name]) do
      reconcile_owner(store, ctx, owner)
    end
    timings[module_name] = now() - mark
  end
  local total = now() - started
  assert(same_owners(dirty, groups), "the load did not mark every owner dirty")
  timings.allocated_mb = (collectgarbage("count") - heap_before) / 1024
  collectgarbage("restart")
  return total, store, timings
end

-- The cluster sizes of the benchmarks.
M.SCALES = {
  small = { services = 1000, endpoints = 10, nodes = 100, pods = 1000, policies = 50 },
  big = { services = 10000, endpoints = 10, nodes = 100, pods = 1000, policies = 50 },
}

return M
