-- LocalRedirect loop avoidance, the agent's side: a policy's backend pods
-- (entries.loop_pods, from balancing.reconcile.localredirect) become the
-- (pod cgroup ID, frontend) pairs of map_redirect_loop, so that node-local
-- DNS forwarding to the cluster DNS Service reaches the Service and not
-- itself (ARCHITECTURE.md "Datapath rules"; docs/agent.md "Loop avoidance").
--
--   local loops = loop_avoidance.new{ cgroup = options.cgroup, clock = monotime }
--   entries.redirect_loops = loops:pairs(owner, entries)  -- before applier:apply(owner, entries)
--   local owners = loops:rescan_due()   -- on the agent's tick: owners to reconcile and apply again
--
-- The pairs belong to the LocalRedirect policy's owner and go through the
-- applier with its frontends: the applier writes them before the frontend
-- (apply.h, step 0) and deletes the pairs of pods that left, so the map
-- holds only pods that are backends now. A pod is known by its cgroup, not
-- its netns: a hostNetwork pod shares the host's netns with every host
-- process, but its cgroup is its own (the datapath matches the pod cgroup as
-- an ancestor of the client's, so every container of the pod is covered).
--
-- Reconcile is pure, so the cgroup lookup (I/O) is here, between reconcile
-- and apply. A pod's cgroup can appear after the Pod object (the kubelet
-- makes it when it starts the pod): a pod without one gets no pair yet, and
-- the tick scans again every second until it has one; with every pod found,
-- the hierarchy is still scanned every RESCAN_SECONDS, in case a pod's cgroup
-- was made again. An owner whose pods' cgroups changed is returned by
-- rescan_due, to be reconciled and applied again.
local ffi = require("ffi")
local pod_cgroups = require("balancing.pod_cgroups")

local M = {}

-- Every pod found: scanned again this often anyway.
M.RESCAN_SECONDS = 10
-- A pod not found yet: scanned again at most this often (the agent's tick is
-- one second; a sync that needs a fresh scan waits no longer than this).
M.MISSING_RESCAN_SECONDS = 0.5

local LoopAvoidance = {}
LoopAvoidance.__index = LoopAvoidance

-- new{ cgroup = the --cgroup hierarchy, clock = seconds (monotonic)[, scan = pod_cgroups.scan] }
function M.new(opts)
  return setmetatable({
    root = assert(opts.cgroup, "loop_avoidance.new: cgroup is required"),
    clock = assert(opts.clock, "loop_avoidance.new: clock is required"),
    scan = opts.scan or pod_cgroups.scan,
    found = {},      -- pod uid -> { path, id }, as of the last scan
    scanned_at = nil,
    owners = {},     -- owner -> { [pod uid] = cgroup id | false (not found) } as last given
  }, LoopAvoidance)
end

function LoopAvoidance:rescan()
  self.found = self.scan(self.root)
  self.scanned_at = self.clock()
end

local function scanned_within(self, seconds)
  return self.scanned_at ~= nil and self.clock() - self.scanned_at < seconds
end

-- pairs(owner, entries) → { { key = struct redirect_loop_key, value = struct redirect_loop_value } }:
-- every found backend pod's cgroup with every frontend of the owner's
-- entries; nil for entries without loop_pods (not a LocalRedirect owner).
function LoopAvoidance:pairs(owner, entries)
  local pods = entries.loop_pods
  if not pods then
    return nil
  end
  if #pods == 0 or #entries.frontends == 0 then
    self.owners[owner] = nil
    return {}
  end
  local missing = false
  for _, pod in ipairs(pods) do
    missing = missing or not (pod.uid and self.found[pod.uid])
  end
  if not self.scanned_at or (missing and not scanned_within(self, M.MISSING_RESCAN_SECONDS)) then
    self:rescan()
  end
  local resolved, list = {}, {}
  for _, pod in ipairs(pods) do
    local cgroup = pod.uid and self.found[pod.uid]
    if pod.uid then
      resolved[pod.uid] = cgroup and cgroup.id or false
    end
    if cgroup then
      for _, frontend in ipairs(entries.frontends) do
        local key = ffi.new("struct redirect_loop_key")
        key.cgroup_id = cgroup.id
        key.frontend = frontend.key
        list[#list + 1] = { key = key,
          value = ffi.new("struct redirect_loop_value", { service_id = frontend.value.service_id }) }
      end
    end
  end
  self.owners[owner] = resolved
  return list
end

-- The owners whose pods' cgroups differ from what their last pairs had.
local function changed_owners(self)
  local changed
  for owner, resolved in pairs(self.owners) do
    for uid, id in pairs(resolved) do
      local now = self.found[uid]
      if (now and now.id or false) ~= id then
        changed = changed or {}
        changed[owner] = true
        break
      end
    end
  end
  return changed
end

-- rescan_due() → a set of owners ({ [owner] = true }) to reconcile and apply
-- again, or nil: scans when a pod is still without a cgroup, or every
-- RESCAN_SECONDS; nothing at all while no LocalRedirect has a local pod.
function LoopAvoidance:rescan_due()
  if next(self.owners) == nil then
    return nil
  end
  local missing = false
  for _, resolved in pairs(self.owners) do
    for _, id in pairs(resolved) do
      missing = missing or id == false
    end
  end
  if scanned_within(self, missing and M.MISSING_RESCAN_SECONDS or M.RESCAN_SECONDS) then
    return nil
  end
  self:rescan()
  return changed_owners(self)
end

return M
