-- The node agent's policy side, driven by the C loop (core/agent.c): the
-- datapath loaded and attached, the sources read into the store, every
-- change reconciled (balancing.reconciler) and applied (core.applier), and
-- what the health and metrics endpoints say.
--
--   local agent, err = require("balancing.agent").start(options)   -- options from C
--   agent:sync()        -- a source changed: read it, reconcile the dirty owners, apply
--   agent:ready()       -- every source synced once and its entries applied
--   agent:metrics()     -- the Prometheus text of /metrics
--   agent:event_fd()    -- the ring buffer's fd for the loop (nil with --events off)
--   agent:drain_events() -- the fd is readable: each event as a "formatted ebpf event" line
--   agent:stop()        -- let go of everything; pins and links stay (the datapath keeps working)
--
-- This version follows a manifest directory (--manifests); the API server
-- source comes next (issue 7). On start the pinned maps are read back into
-- the applier, so a restart rewrites nothing that is still wanted, and what
-- no owner wants any more is swept only after the first complete sync.
local core = require("balancing.core")
local log = require("balancing.log")
local store_module = require("balancing.store")
local reconciler = require("balancing.reconciler")
local manifest_source = require("balancing.manifest_source")
local event = require("balancing.event")
local lfs = require("lfs")

local M = {}

local Agent = {}
Agent.__index = Agent

-- start(options) → agent | nil, err. options: node_name, manifests, cgroup,
-- bpffs, bpf_log_level, redirect_qos_limit, events, out_cluster,
-- service_proxy_name (as core/options.c parsed them).
function M.start(options)
  if not options.manifests then
    return nil, "the API server source is not built yet: give --manifests DIR"
  end
  local dp, err = core.load({ bpffs = options.bpffs, bpf_log_level = options.bpf_log_level,
    redirect_qos_limit = options.redirect_qos_limit, events = options.events })
  if not dp then
    return nil, "load: " .. tostring(err)
  end
  local ok
  ok, err = dp:attach(options.cgroup)
  if not ok then
    dp:close()
    return nil, "attach: " .. tostring(err)
  end
  local applier
  applier, err = core.applier(dp)
  if not applier then
    dp:close()
    return nil, "applier: " .. tostring(err)
  end
  local store = store_module.new({ node_name = options.node_name,
    service_proxy_name = options.service_proxy_name })
  local self = setmetatable({
    options = options, dp = dp, applier = applier, store = store,
    source = manifest_source.new(store, options.manifests),
    driver = reconciler.new({ store = store, node_name = options.node_name, out_cluster = options.out_cluster }),
    synced = false, retry = {},
    counters = { syncs = 0, apply_errors = 0, lua_errors = 0, events = 0 },
  }, Agent)
  self.formatter = event.new({ store = store, node_name = options.node_name,
    cgroup_path = function(id) return self:cgroup_path(id) end })
  applier:read_back()
  self:sync()
  return self
end

-- Applies one round's changed owners; an owner whose apply failed is kept
-- for the next sync (its entries are retried; the shadow holds only what the
-- kernel took).
local function apply_round(self, changed)
  for owner, entries in pairs(changed) do
    local stats, err = self.applier:apply(owner, entries)
    if stats then
      self.retry[owner] = nil
    else
      self.counters.apply_errors = self.counters.apply_errors + 1
      self.retry[owner] = true
      log.error("apply failed", { owner = owner, error = tostring(err) })
    end
  end
end

function Agent:sync()
  local report, err = self.source:sync()
  if not report then
    log.warn("source not read", { error = tostring(err) })
    return false
  end
  local owners = self.store:take_dirty()
  for owner in pairs(self.retry) do
    owners[owner] = true
  end
  if not self.synced then
    owners = self.store:owners() -- the first round: everything
  end
  local round = self.driver:run(owners)
  self.counters.lua_errors = self.counters.lua_errors + #round.failures
  apply_round(self, round.changed)
  if not self.synced then
    local swept = self.applier:sweep()
    self.synced = true
    log.info("first sync applied", { objects = report.objects, owners = #self.driver:all_entries(),
      swept = type(swept) == "table" and swept or nil })
  end
  self.counters.syncs = self.counters.syncs + 1
  return true
end

-- The cgroups under --cgroup by ID (a cgroup v2 ID is its directory's inode
-- number), for the events of processes that exited before their event was
-- read. Walked again on a miss, at most once a second: pods come and go.
local CGROUP_WALK_DEPTH = 8

local function walk_cgroups(dir, relative, depth, out)
  local inode = lfs.attributes(dir, "ino")
  if not inode then
    return
  end
  out[inode] = relative == "" and "/" or relative
  if depth == 0 then
    return
  end
  local ok, iterator, state = pcall(lfs.dir, dir)
  if not ok then
    return
  end
  for name in iterator, state do
    if name ~= "." and name ~= ".." and lfs.symlinkattributes(dir .. "/" .. name, "mode") == "directory" then
      walk_cgroups(dir .. "/" .. name, relative .. "/" .. name, depth - 1, out)
    end
  end
end

function Agent:cgroup_path(id)
  local known = self.cgroup_paths and self.cgroup_paths[id]
  if known or (self.cgroups_walked_at and os.time() - self.cgroups_walked_at < 1) then
    return known
  end
  -- paths as /proc/PID/cgroup shows them: from the cgroup2 mount's root
  local root = core.cgroup2_mount() or ""
  local cgroup = self.options.cgroup
  local relative = cgroup:sub(1, #root) == root and cgroup:sub(#root + 1) or ""
  self.cgroup_paths = {}
  walk_cgroups(cgroup, relative, CGROUP_WALK_DEPTH, self.cgroup_paths)
  self.cgroups_walked_at = os.time()
  return self.cgroup_paths[id]
end

-- Events a loop turn takes at most: the rest stay in the ring (its fd stays
-- readable) and come at the next turn, so a flood never holds the loop.
local EVENTS_PER_TURN = 1024

function Agent:event_fd()
  if self.options.events == "off" then
    return nil
  end
  local reader, err = self.dp:events()
  if not reader then
    log.error("events not read", { error = tostring(err) })
    return nil
  end
  self.reader = reader
  return reader:fd()
end

-- One JSON line on stdout per translation event (CONTRACTS.md "Logs").
function Agent:drain_events()
  local list, err = self.reader:poll(0, EVENTS_PER_TURN)
  if not list then
    log.error("events not read", { error = tostring(err) })
    return
  end
  local lines = {}
  for i, decoded in ipairs(list) do
    lines[i] = self.formatter:line(decoded)
  end
  if #lines > 0 then
    lines[#lines + 1] = ""
    io.stdout:write(table.concat(lines, "\n"))
    io.stdout:flush()
    self.counters.events = self.counters.events + #list
  end
end

function Agent:ready()
  return self.synced
end

function Agent:metrics()
  local frontends, backends = 0, 0
  for _, entries in ipairs(self.driver:all_entries()) do
    frontends = frontends + #entries.frontends
    for _, frontend in ipairs(entries.frontends) do
      backends = backends + #frontend.backends
    end
  end
  return table.concat({
    "# HELP balancing_frontends Frontends programmed.",
    "# TYPE balancing_frontends gauge",
    "balancing_frontends " .. frontends,
    "# HELP balancing_backends Backend slots programmed.",
    "# TYPE balancing_backends gauge",
    "balancing_backends " .. backends,
    "# HELP balancing_map_write_errors_total Applies the kernel refused (retried at the next sync).",
    "# TYPE balancing_map_write_errors_total counter",
    "balancing_map_write_errors_total " .. self.counters.apply_errors,
    "# HELP balancing_lua_errors_total Reconciles that failed in a Lua module.",
    "# TYPE balancing_lua_errors_total counter",
    "balancing_lua_errors_total " .. self.counters.lua_errors,
    "# HELP balancing_events_total Translation events logged.",
    "# TYPE balancing_events_total counter",
    "balancing_events_total " .. self.counters.events,
    "# HELP balancing_syncs_total Source syncs.",
    "# TYPE balancing_syncs_total counter",
    "balancing_syncs_total " .. self.counters.syncs,
    "",
  }, "\n")
end

function Agent:stop()
  if self.reader then
    self:drain_events() -- what is already in the ring
    self.reader:close()
  end
  self.applier:close()
  self.dp:close() -- closes our fds only: maps and links stay pinned
end

M.Agent = Agent

return M
