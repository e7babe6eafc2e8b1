-- The reconcile driver, one for `plan` and the agent: dirty owners in, each
-- reconciled by its module under a protected call, desired entries,
-- rejections and notices out.
--
--   local driver = reconciler.new{ store = store, node_name = "node-1", out_cluster = false }
--   local round = driver:run(store:take_dirty())     -- or store:owners(): everything
--   for owner, entries in pairs(round.changed) do ... end   -- what apply writes
--   driver.entries[owner], driver.rejections[owner]         -- the last good ones
--   driver:programmed()                                     -- frontends, backend slots
--
-- keep_entries = false (the agent): the entries are not kept once a round
-- has given them (apply keeps what it wrote, in C); driver.entries and
-- all_entries are then empty, and programmed() still counts.
--
-- A module that fails for one owner (an error, or a result that is not
-- entries) is logged with the owner and the module, with its traceback; that
-- owner keeps its last entries and rejections, and the other owners go on
-- (Kong's per-plugin protected calls, Knot's l_ffi_call_mod; ARCHITECTURE.md
-- "The C ↔ Lua boundary"). Modules are required when the driver is made, so
-- an override directory on package.path is honoured; one that fails to load
-- fails its owners the same way, logged once when it is loaded.
--
-- Notices ({ message, fields, level = "debug" | "info" (default) }) are what
-- a module left out on purpose (an SCTP port, a node without an ID yet): the
-- driver logs them at their level, with the owner and the module.
local log = require("balancing.log")
local store_module = require("balancing.store")

local M = {}

local Reconciler = {}
Reconciler.__index = Reconciler

-- The module that reconciles each kind of owner.
M.MODULES = {
  Node = "balancing.reconcile.node",
  Service = "balancing.reconcile.service",
  LocalRedirectPolicy = "balancing.reconcile.localredirect",
  BalancingPolicy = "balancing.reconcile.balancing",
}

local parse_owner = store_module.parse_owner

-- The protected call: the error with the traceback of where it was raised.
local function traceback(err)
  return debug.traceback(tostring(err), 2)
end

-- One shared list for the owners without rejections (most of them).
local NO_REJECTIONS = setmetatable({}, { __newindex = function()
  error("balancing.reconciler: NO_REJECTIONS is read-only", 2)
end })

-- new{ store, node_name, out_cluster[, modules = { kind = module table }][, keep_entries = true][, quiet = true] }
-- quiet: nothing is logged (a dry run, whose caller reports the outcome).
function M.new(opts)
  local self = setmetatable({
    store = assert(opts.store, "reconciler.new: store is required"),
    node_name = opts.node_name,
    out_cluster = opts.out_cluster and true or false,
    keep_entries = opts.keep_entries ~= false,
    quiet = opts.quiet and true or false,
    modules = {},      -- kind -> module table
    load_errors = {},  -- kind -> { module, error }
    entries = {},      -- owner -> the last entries that module gave (keep_entries)
    frontend_counts = {}, -- owner -> frontends of those entries
    backend_counts = {},  -- owner -> their backend slots
    rejections = {},   -- owner -> the rejections that came with them
  }, Reconciler)
  for kind, name in pairs(M.MODULES) do
    local given = opts.modules and opts.modules[kind]
    if given then
      self.modules[kind] = given
    else
      local ok, module = xpcall(require, traceback, name)
      if ok and type(module) == "table" and type(module.desired) == "function" then
        self.modules[kind] = module
      else
        local err = ok and ("returned " .. type(module) .. ", not a table with desired()") or module
        self.load_errors[kind] = { module = name, error = err }
        log.error("module failed to load", { module = name, error = err })
      end
    end
  end
  return self
end

-- A module's result is usable when it is entries of the owner asked for.
local function check_result(owner, entries, rejections, notices)
  if type(entries) ~= "table" or type(entries.frontends) ~= "table" then
    return nil, "desired returned " .. type(entries) .. " rather than entries with frontends"
  end
  if entries.owner ~= owner then
    return nil, string.format("desired returned the entries of %q for owner %q", tostring(entries.owner), owner)
  end
  if rejections ~= nil and type(rejections) ~= "table" then
    return nil, "desired returned rejections of type " .. type(rejections)
  end
  if notices ~= nil and type(notices) ~= "table" then
    return nil, "desired returned notices of type " .. type(notices)
  end
  return true
end

-- The arguments each kind's desired takes after (store, ctx).
local function call_desired(module, store, ctx, kind, namespace, name)
  if kind == "Service" then
    return module.desired(store, ctx, namespace, name)
  elseif kind == "Node" then
    return module.desired(store, ctx)
  end
  return module.desired(store, ctx, name)
end

local function sorted_keys(map)
  local keys = {}
  for key in pairs(map) do
    keys[#keys + 1] = key
  end
  table.sort(keys)
  return keys
end

-- run(owners) → round: owners is a set ({ [owner] = true }, as take_dirty
-- and owners() give). round = {
--   changed  = { [owner] = entries } for every owner reconciled (a gone
--              object gives empty entries, so that apply removes its own),
--   failures = { { owner, module, error } }, in owner order,
--   notices  = { { owner, module, message, fields } }, in owner order }.
-- Failures are logged as "reconcile failed" and notices at info level.
function Reconciler:run(owners)
  local round = { changed = {}, failures = {}, notices = {} }
  local store = self.store
  local order = sorted_keys(owners)

  local node_module = self.modules.Node
  local ctx_ok, ctx
  if node_module then
    ctx_ok, ctx = xpcall(node_module.context, traceback, store, self.node_name, self.out_cluster)
  else
    ctx_ok, ctx = false, "module failed to load: " .. self.load_errors.Node.error
  end

  for _, owner in ipairs(order) do
    local kind, namespace, name = parse_owner(owner)
    local module_name = kind and M.MODULES[kind] or "?"
    local module = kind and self.modules[kind]
    local ok, entries, rejections, notices
    local logged = false -- a module that failed to load was logged then
    if not kind then
      ok, entries = false, "not an owner key"
    elseif not module then
      ok, entries, logged = false, "module failed to load: " .. self.load_errors[kind].error, true
    elseif not ctx_ok then
      ok, entries, module_name = false, "node context: " .. tostring(ctx), M.MODULES.Node
    else
      ok, entries, rejections, notices = xpcall(call_desired, traceback, module, store, ctx, kind, namespace, name)
      if ok then
        local err
        ok, err = check_result(owner, entries, rejections, notices)
        if not ok then
          entries = err
        end
      end
    end
    if ok then
      round.changed[owner] = entries
      if self.keep_entries then
        self.entries[owner] = entries
      end
      local backends = 0
      for _, frontend in ipairs(entries.frontends) do
        backends = backends + (frontend.backends and #frontend.backends or 0)
      end
      self.frontend_counts[owner], self.backend_counts[owner] = #entries.frontends, backends
      self.rejections[owner] = (rejections and #rejections > 0) and rejections or NO_REJECTIONS
      for _, notice in ipairs(notices or {}) do
        round.notices[#round.notices + 1] = { owner = owner, module = module_name,
          message = notice.message, fields = notice.fields }
        local fields = { owner = owner, module = module_name }
        for key, value in pairs(type(notice.fields) == "table" and notice.fields or {}) do
          fields[key] = value
        end
        -- (a dry run says nothing: its owners are reconciled again for real)
        if not self.quiet then
          local write = notice.level == "debug" and log.debug or log.info
          write(tostring(notice.message), fields)
        end
      end
    else
      -- the owner keeps its last entries: nothing in round.changed
      round.failures[#round.failures + 1] = { owner = owner, module = module_name, error = tostring(entries) }
      if not logged and not self.quiet then
        log.error("reconcile failed", { owner = owner, module = module_name, error = tostring(entries) })
      end
    end
  end
  return round
end

-- Reconciles with other modules from now on ({ kind = module table }, every
-- kind of M.MODULES): a live override accepted by balancing.overrides. The
-- last entries stay until the owners are reconciled again.
function Reconciler:use_modules(modules)
  for kind in pairs(M.MODULES) do
    assert(type(modules[kind]) == "table", "use_modules: no module for " .. kind)
  end
  self.modules, self.load_errors = modules, {}
end

-- The first failure of a dry run of modules over every owner of store, or nil
-- when every owner reconciles: { owner, module, error } (error with its
-- traceback). Nothing is logged and no driver's entries change.
function M.dry_run(opts)
  local driver = M.new({ store = opts.store, node_name = opts.node_name, out_cluster = opts.out_cluster,
    modules = opts.modules, quiet = true, keep_entries = false })
  -- in parts, each part's entries garbage before the next: a large
  -- cluster's entries all at once would be the agent's peak heap
  for i, part in ipairs(M.parts(opts.store:owners(), M.PART_SIZE)) do
    if i > 1 then
      collectgarbage()
    end
    local failure = driver:run(part).failures[1]
    if failure then
      return failure
    end
  end
  return nil
end

-- Owners reconciled at a time in a large round (the agent's first, one after
-- a relist, a dry run): each part's entries and garbage can be collected
-- before the next.
M.PART_SIZE = 1000

-- parts(owners, size) → the owner set as an array of sets of at most size
-- owners, in owner order.
function M.parts(owners, size)
  local order = sorted_keys(owners)
  local parts = {}
  for first = 1, #order, size do
    local part = {}
    for i = first, math.min(first + size - 1, #order) do
      part[order[i]] = true
    end
    parts[#parts + 1] = part
  end
  return parts
end

-- Forgets the owners whose objects are gone and whose empty entries have
-- been written (the agent calls it after apply; plan never needs to).
function Reconciler:forget(owner)
  self.entries[owner] = nil
  self.frontend_counts[owner], self.backend_counts[owner] = nil, nil
  self.rejections[owner] = nil
end

-- programmed() → frontends, backend slots, owners: the totals of every
-- owner's last entries.
function Reconciler:programmed()
  local frontends, backends, owners = 0, 0, 0
  for owner, count in pairs(self.frontend_counts) do
    frontends, backends, owners = frontends + count, backends + self.backend_counts[owner], owners + 1
  end
  return frontends, backends, owners
end

-- Every owner's last entries, in owner order (what the frontend view shows).
function Reconciler:all_entries()
  local list = {}
  for i, owner in ipairs(sorted_keys(self.entries)) do
    list[i] = self.entries[owner]
  end
  return list
end

-- Every owner's rejections, in owner order.
function Reconciler:all_rejections()
  local list = {}
  for _, owner in ipairs(sorted_keys(self.rejections)) do
    for _, rejection in ipairs(self.rejections[owner]) do
      list[#list + 1] = rejection
    end
  end
  return list
end

M.Reconciler = Reconciler

return M
