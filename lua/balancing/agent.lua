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
--   agent:drain_events() -- the fd is readable (or a tick): each event as a "formatted ebpf event"
--                           line, a bounded turn (balancing.event_drain)
--   agent:lua_dir_changed() -- the override directory changed: a live override checked and swapped in
--   agent:tick()        -- every second: backend pods' cgroups found since (loop avoidance),
--                          RUN_DIR/state.json for inspect rewritten when it changed (balancing.agent_state),
--                          and the log lines stdout refused said when due (balancing.output_drops)
--   agent:stop()        -- let go of everything; pins and links stay (the datapath keeps working)
--
-- It follows a manifest directory (--manifests) or the API server
-- (balancing.kube_source). On start the pinned maps are read back into
-- the applier, so a restart rewrites nothing that is still wanted, and what
-- no owner wants any more is swept only after the first complete sync.
local core = require("balancing.core")
local log = require("balancing.log")
local store_module = require("balancing.store")
local reconciler = require("balancing.reconciler")
local overrides = require("balancing.overrides")
local agent_metrics = require("balancing.agent_metrics")
local kube_source = require("balancing.kube_source")
local kubeconfig = require("balancing.kubeconfig")
local manifest_source = require("balancing.manifest_source")
local event = require("balancing.event")
local event_drain = require("balancing.event_drain")
local output_drops = require("balancing.output_drops")
local map_fill = require("balancing.map_fill")
local loop_avoidance = require("balancing.loop_avoidance")
local agent_state = require("balancing.agent_state")
local lfs = require("lfs")
local monotime = require("system").monotime

local M = {}

local created_maps, attach_when_deferred -- (below, with what they serve)

local Agent = {}
Agent.__index = Agent

-- Where the API server is: --kubeconfig, or the pod's service account.
local function api_access(options)
  if options.kubeconfig then
    return kubeconfig.from_file(options.kubeconfig)
  end
  return kubeconfig.in_cluster(os.getenv)
end

-- The source of objects: the manifest directory, or the API server with
-- the access start() read.
local function open_source(store, options, access)
  if options.manifests then
    return manifest_source.new(store, options.manifests)
  end
  return kube_source.new(store, { access = access, node_name = options.node_name,
    service_proxy_name = options.service_proxy_name,
    -- tuning (docs/agent.md), and the specs' way to see pages and stalls soon
    stall_seconds = tonumber(os.getenv("BALANCING_WATCH_STALL_SECONDS")),
    page_size = tonumber(os.getenv("BALANCING_LIST_PAGE_SIZE")) })
end

-- Map sizes from the environment (docs/agent.md "Map sizes"): each of
-- core.load's max_* and event_ring_bytes as BALANCING_MAX_SERVICES, ...;
-- the defaults hold a 10,000-Service cluster. The loader checks the values.
local MAP_SIZES = { "max_services", "max_backends", "max_affinity", "max_nat_records", "max_tcp_nat_records",
  "max_node_ips", "max_node_proxy_ips", "max_redirect_qos", "max_redirect_loop", "max_translation_counters",
  "event_ring_bytes" }

local function map_sizes(load_options, getenv)
  for _, name in ipairs(MAP_SIZES) do
    local variable = "BALANCING_" .. name:upper()
    local text = getenv(variable)
    if text and text ~= "" then
      local value = tonumber(text)
      if not value or value ~= math.floor(value) or value < 1 then
        return nil, string.format('%s: "%s" is not a positive whole number', variable, text)
      end
      load_options[name] = value
    end
  end
  return load_options
end

-- The running agent logs on stdout, one JSON object per line (CONTRACTS.md
-- "Logs"), as its C side does: through the agent's output (core/output.h),
-- which takes a line whole or refuses it (counted) and never blocks the loop
-- on a stalled reader. Outside the binary (no output) a plain flushed write.
local function plain_stdout(text)
  io.stdout:write(text)
  io.stdout:flush()
end

local function stdout_sink(line)
  local text = line .. "\n"
  local taken = core.output_log(text)
  if taken == nil then
    plain_stdout(text)
  end
  return taken
end

-- The events' lines the same way: → the lines the output refused.
local function stdout_events(text)
  local taken, refused = core.output_write(text)
  if taken == nil then
    plain_stdout(text)
    return 0
  end
  return refused
end

-- The log lines the output refused so far.
local function log_lines_dropped()
  local stats = core.output_stats()
  return stats and stats.log_lines_dropped or 0
end

-- The maps the load created rather than reused (comma-separated names), or
-- nil when it reused every one.
function created_maps(dp)
  local names = {}
  for name, state in pairs(dp:map_states()) do
    if state == "created" then
      names[#names + 1] = name
    end
  end
  table.sort(names)
  return #names > 0 and table.concat(names, ",") or nil
end

-- start(options) → agent | nil, err[, how]: how "usage" when the command line
-- is at fault (nothing was touched), "logged" when the reason is logged
-- already. options: node_name, manifests,
-- kubeconfig, cgroup, bpffs, bpf_log_level, redirect_qos_limit, events,
-- out_cluster, service_proxy_name (as core/options.c parsed them).
function M.start(options)
  log.set_sink(stdout_sink)
  local store = store_module.new({ node_name = options.node_name,
    service_proxy_name = options.service_proxy_name })
  -- the API access first: a broken kubeconfig loads nothing
  local access
  if not options.manifests then
    local access_err
    access, access_err = api_access(options)
    if not access then
      return nil, access_err, "usage" -- a bad kubeconfig is a bad command line (CONTRACTS.md)
    end
  end
  -- the reconcile modules start as the built-in ones (an installation
  -- whose built-in modules do not load stops here, having touched nothing);
  -- the directory's are checked against the complete store at the first sync
  local host = package.loaded["balancing.host"] or {}
  local live = overrides.new({ dir = host.override_dir or "/etc/balancing/lua",
    builtin_dir = host.builtin_dir or "lua" })
  -- then the cgroup to attach to: cgroup2 mounted there when nothing is
  local usable, mounted = core.ensure_cgroup2(options.cgroup)
  if not usable then
    log.error("agent cannot start", { cgroup = options.cgroup, error = tostring(mounted) })
    return nil, mounted, "logged"
  end
  if mounted then
    log.info("mounted cgroup2", { path = options.cgroup })
  end
  local load_options, size_err = map_sizes({ bpffs = options.bpffs, bpf_log_level = options.bpf_log_level,
    redirect_qos_limit = options.redirect_qos_limit, events = options.events }, os.getenv)
  if not load_options then
    return nil, size_err, "usage"
  end
  local dp, err = core.load(load_options)
  if not dp then
    return nil, "load: " .. tostring(err)
  end
  -- An upgrade that recreated a map (its layout or size changed) while an
  -- earlier agent's programs are attached: the old programs keep serving
  -- from the old maps until the new ones are filled, so the attach (the
  -- programs swapped behind the pinned links) waits for the first sync.
  local deferred = next(dp:links() or {}) ~= nil and created_maps(dp)
  if not deferred then
    local ok
    ok, err = dp:attach(options.cgroup)
    if not ok then
      dp:close()
      return nil, "attach: " .. tostring(err)
    end
  else
    log.info("attach deferred until the new maps are filled", { created = deferred })
  end
  local applier
  applier, err = core.applier(dp)
  if not applier then
    dp:close()
    return nil, "applier: " .. tostring(err)
  end
  local src
  src, err = open_source(store, options, access)
  if not src then
    applier:close()
    dp:close()
    return nil, err
  end
  local self = setmetatable({
    options = options, dp = dp, applier = applier, store = store, source = src, overrides = live,
    attached = not deferred,
    -- (apply keeps what it wrote: the entries are not kept in Lua as well)
    driver = reconciler.new({ store = store, node_name = options.node_name, out_cluster = options.out_cluster,
      modules = live.modules, keep_entries = false }),
    synced = false, retry = {},
  }, Agent)
  -- the plain-hash maps whose entries no datapath rebuilds (map_redirect_loop:
  -- the loop-avoidance pairs): a full one is said, never silent
  self.map_fill = map_fill.new(dp, { "map_redirect_loop" })
  self.loop_avoidance = loop_avoidance.new({ cgroup = options.cgroup, clock = monotime })
  self.meters = agent_metrics.new(self)
  -- a stalled reader of stdout costs lines: said when it reads again
  self.output_drops = output_drops.new({ dropped = log_lines_dropped,
    interval = tonumber(os.getenv("BALANCING_OUTPUT_DROP_LOG_SECONDS")) })
  -- owners' names and why one is not programmed, for inspect
  self.state = agent_state.new({ path = (options.run_dir or "/run/balancing") .. "/state.json",
    node_name = options.node_name, bpffs = options.bpffs })
  self.formatter = event.new({ store = store, node_name = options.node_name,
    cgroup_path = function(id) return self:cgroup_path(id) end })
  applier:read_back()
  if src.on_change then
    -- the API server: changes come through the loop, coalesced per turn;
    -- nothing is reconciled before every kind is listed once
    src:on_change(function() self:sync() end)
  else
    self:sync()
  end
  return self
end

-- The connected UDP sockets we translated to backends that the round took
-- out of UDP frontends are destroyed, once the new slots are in the kernel
-- (a client reconnecting at once finds them): docs/datapath.md, "Stale
-- sockets". The agent's network namespace is walked, and those of the
-- processes in --cgroup (pods have their own).
local function destroy_stale_sockets(self, departed)
  if #departed == 0 then
    return
  end
  local destroyed, err = self.dp:destroy_stale_sockets(departed, self.options.cgroup)
  if not destroyed then
    log.warn("stale UDP sockets not destroyed", { pairs = #departed, error = tostring(err) })
    return
  end
  self.meters.stale_sockets:inc(destroyed)
  if destroyed > 0 then
    log.info("stale UDP sockets destroyed", { sockets = destroyed, pairs = #departed })
  end
end

-- Applies one round's changed owners; an owner whose apply failed is kept
-- for the next sync (its entries are retried; the shadow holds only what the
-- kernel took).
local function apply_round(self, changed)
  local departed = {}
  for owner, entries in pairs(changed) do
    -- (a LocalRedirect's backend pods as the pairs of map_redirect_loop)
    entries.redirect_loops = self.loop_avoidance:pairs(owner, entries)
    local stats, err, _, partial = self.applier:apply(owner, entries)
    for _, pair in ipairs((stats or partial or {}).departed or {}) do
      departed[#departed + 1] = pair
    end
    if stats then
      self.retry[owner] = nil
      self.meters.map_writes:inc(stats.written + stats.deleted)
      if #entries.frontends == 0 and next(entries.tables or {}) == nil then
        self.driver:forget(owner) -- gone (or programs nothing): nothing to count
      end
    else
      self.meters.map_write_errors:inc()
      self.retry[owner] = true
      log.error("apply failed", { owner = owner, error = tostring(err) })
    end
  end
  destroy_stale_sockets(self, departed)
end

-- A large round (the first, one after a relist or a change of this node)
-- is reconciled and applied in parts (reconciler.parts), collected between
-- them, so that the heap does not grow to hold a whole cluster's entries at
-- once (the allocator keeps what it was given: docs/benchmarks.md, "Agent at
-- scale").
-- reconcile_and_apply(self, owners) → reconcile seconds, apply seconds
local function reconcile_and_apply(self, owners)
  local parts = reconciler.parts(owners, reconciler.PART_SIZE)
  local reconcile_seconds, apply_seconds = 0, 0
  for i, part in ipairs(parts) do
    if i > 1 then
      collectgarbage() -- (the part before is out of scope here)
    end
    local started = monotime()
    local round = self.driver:run(part)
    local reconciled = monotime()
    self.meters.lua_errors:inc(#round.failures)
    self.state:record(round, self.driver)
    apply_round(self, round.changed)
    reconcile_seconds = reconcile_seconds + (reconciled - started)
    apply_seconds = apply_seconds + (monotime() - reconciled)
  end
  if #parts > 1 and self.synced then
    collectgarbage()
    core.trim_heap() -- (the first round's is done once the sync is complete)
  end
  return reconcile_seconds, apply_seconds
end

-- A manifest directory is read here; the API server's changes are already
-- in the store (its watches ingest them as they come).
local function read_source(self)
  if not self.source.sync then
    return { objects = self.store:count() }
  end
  local report, err = self.source:sync()
  if not report then
    log.warn("source not read", { error = tostring(err) })
  end
  return report
end

-- The override directory's live modules checked and, when they pass,
-- swapped in (balancing.overrides): the dry run reconciles every owner of
-- the store as it is, nothing applied. → "accepted" | "refused" | nil.
function Agent:reload_overrides()
  local options = self.options
  local outcome = self.overrides:reload(function(modules)
    return reconciler.dry_run({ store = self.store, node_name = options.node_name,
      out_cluster = options.out_cluster, modules = modules })
  end)
  if outcome then
    self.meters.lua_reloads:inc(1, { result = outcome })
  end
  if outcome == "accepted" then
    self.driver:use_modules(self.overrides.modules)
  end
  return outcome
end

-- The C side's watch of --lua-dir saw a change (a burst is one call). Before
-- the first sync nothing is done: that sync checks the directory itself,
-- against a complete store.
function Agent:lua_dir_changed()
  if self.synced and self:reload_overrides() == "accepted" then
    self.reconcile_all = true
    self:sync()
  end
end

-- The deferred attach (start), once the new maps hold the first sync's
-- entries; retried every tick while it fails (the old programs stay behind
-- the links meanwhile, and /readyz says not ready).
function attach_when_deferred(self)
  if self.attached then
    return true
  end
  local ok, err = self.dp:attach(self.options.cgroup)
  if not ok then
    if not self.attach_error then
      log.error("attach failed: the earlier programs still serve", { cgroup = self.options.cgroup,
        error = tostring(err) })
    end
    self.attach_error = tostring(err)
    return false
  end
  self.attached, self.attach_error = true, nil
  log.info("programs attached", { cgroup = self.options.cgroup })
  return true
end

function Agent:sync()
  local report = read_source(self)
  if not report then
    return false
  end
  if not self.synced and self.source.synced and not self.source:synced() then
    if self.source.take_received then
      self.source:take_received() -- (not a change's latency, and must not pile up meanwhile)
    end
    return false -- the first round waits for every kind: a half-listed cluster would remove backends
  end
  local owners = self.store:take_dirty()
  for owner in pairs(self.retry) do
    owners[owner] = true
  end
  if not self.synced then
    -- the first round: everything, with the directory's overrides if they
    -- survive a dry run of the complete store
    self:reload_overrides()
    owners = self.store:owners()
  elseif self.reconcile_all then
    owners = self.store:owners() -- other modules: every owner again
  end
  self.reconcile_all = false
  local reconcile_seconds, apply_seconds = reconcile_and_apply(self, owners)
  self.meters.reconcile_duration:observe(reconcile_seconds)
  self.meters.apply_duration:observe(apply_seconds)
  local applied = monotime()
  if self.source.take_received then
    -- (the first round waited for every kind's list: not a change's latency)
    for _, received in ipairs(self.source:take_received()) do
      if self.synced then
        self.meters.sync_latency:observe(applied - received)
      end
    end
  end
  if not self.synced then
    local swept = self.applier:sweep()
    self.synced = true
    -- the lists' pages and the first round's garbage are most of the heap
    -- the agent will ever have: give it back now rather than at the
    -- collector's next cycle, which the steady state takes long to reach —
    -- and the pages it freed to the system
    self.state:flush(self.store)
    collectgarbage("collect")
    core.trim_heap()
    log.info("first sync applied", { objects = report.objects, owners = select(3, self.driver:programmed()),
      swept = type(swept) == "table" and swept or nil })
    attach_when_deferred(self) -- (the new maps hold every entry now)
  end
  if self.source.write_identity then
    self.source:write_identity(owners)
  end
  self.map_fill:check()
  self.meters.syncs:inc()
  return true
end

-- Called every second by the loop: a LocalRedirect backend pod whose cgroup
-- appeared (or changed) since its policy was applied gets its
-- loop-avoidance pairs now (balancing.loop_avoidance).
function Agent:tick()
  self.output_drops:report()
  if not self.synced then
    return
  end
  attach_when_deferred(self)
  local owners = self.loop_avoidance:rescan_due()
  if owners then
    reconcile_and_apply(self, owners)
  end
  self.state:flush(self.store) -- (written only when an ID or an owner's problems changed)
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
  -- (a pin set from before map_event_drops has none: only the ring's
  -- drops are then unknown)
  local drops_map = self.dp:map("map_event_drops") or nil
  self.event_drain = event_drain.new({ reader = reader, drops_map = drops_map,
    interval = tonumber(os.getenv("BALANCING_EVENT_DROP_LOG_SECONDS")),
    format = function(decoded) return self.formatter:line(decoded) end,
    write = stdout_events,
    written = function(n) self.meters.events:inc(n) end })
  return reader:fd()
end

-- The fd is readable, or the loop's tick: one bounded turn (balancing.event_drain:
-- one JSON line on stdout per translation event, CONTRACTS.md "Logs"; the rest
-- at the next turn, or shed and counted when the agent cannot keep up).
function Agent:drain_events()
  self.event_drain:turn()
end

function Agent:ready()
  return self.synced and self.attached
end

function Agent:metrics()
  return self.meters:render()
end

function Agent:stop()
  if self.synced then
    self.state:flush(self.store)
  end
  if self.reader then
    self:drain_events() -- what is already in the ring
    self.event_drain:report(true) -- what was lost since the last line
    self.reader:close()
  end
  if self.source.close then
    self.source:close()
  end
  self.applier:close()
  self.dp:close() -- closes our fds only: maps and links stay pinned
  self.output_drops:report(true) -- (C flushes the output after this, waiting a bounded while)
end

M.Agent = Agent

return M
