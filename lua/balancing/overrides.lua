-- Live Lua overrides: the reconcile modules of the override directory
-- (--lua-dir, a ConfigMap mount) swapped into the running agent when the
-- directory changes, each change checked before it runs.
--
--   local live = require("balancing.overrides").new{ dir = host.override_dir, builtin_dir = host.builtin_dir }
--   driver = reconciler.new{ ..., modules = live.modules }     -- the built-in modules at first
--   local outcome = live:reload(dry_run)   -- "accepted" | "refused" | nil (nothing new)
--   if outcome == "accepted" then driver:use_modules(live.modules) end
--
-- Why only these modules (M.LIVE): they are pure functions of the store and
-- the node context, called afresh for every owner, so a new version applies
-- to every owner as soon as each is reconciled again. The other modules hold
-- state or have left it behind (the store's indexes and checked specs, the
-- ID registry, the sources, the loop's agent, the event formatter): a new
-- version of them would run beside what the old one built. They are read from
-- the directory when the agent starts; a change to one while it runs is said
-- once in the log (module and file) and takes effect at the next start.
--
-- A reload takes the whole set of live modules as the directory holds it now
-- (an override file, else the built-in one): a reconcile module captures its
-- helpers when it loads (service.lua requires endpoints.lua), so a changed
-- helper means its users are loaded again too. The set is checked — every
-- file compiles, every module loads and returns a table with the functions
-- of the built-in module of that name, and dry_run (every owner of the
-- current store reconciled, nothing applied) finds no failure — and only
-- then replaces the running set. A set that fails is refused with one log
-- line naming the module, the file and the error (and the owner, for a dry
-- run failure); the running set stays, and the same refused content is not
-- tried (nor logged) again.
local lfs = require("lfs")
local log = require("balancing.log")
local read_text = require("balancing.manifests").read_text -- text | nil, err
local reconciler = require("balancing.reconciler")

local M = {}

-- The live modules, helpers first: a broken helper is named before the
-- modules that load it.
M.LIVE = {
  "balancing.reconcile.endpoints",
  "balancing.reconcile.policy",
  "balancing.reconcile.node",
  "balancing.reconcile.service",
  "balancing.reconcile.localredirect",
  "balancing.reconcile.balancing",
}

local IS_LIVE = {}
for _, name in ipairs(M.LIVE) do
  IS_LIVE[name] = true
end

-- Directories below the override directory that are searched for modules
-- the agent cannot swap live (balancing/, balancing/reconcile/, ...).
local SCAN_DEPTH = 4

local Overrides = {}
Overrides.__index = Overrides

local function module_file(dir, name)
  return dir .. "/" .. name:gsub("%.", "/") .. ".lua"
end

-- The error itself, without the traceback the protected calls add.
local function error_message(err)
  local text = tostring(err)
  return text:match("^(.-)\nstack traceback:") or text
end

-- The sorted names of a module table's functions: what a replacement must
-- offer, since other modules and the reconciler call them.
local function function_names(module)
  local names = {}
  for key, value in pairs(module) do
    if type(key) == "string" and type(value) == "function" then
      names[#names + 1] = key
    end
  end
  table.sort(names)
  return names
end

-- Loads one set of live modules from sources ({ [name] = { file, text } })
-- through package.preload, so that what was read and checked is exactly what
-- runs, and each module's requires of the others get this set. Leaves
-- package.loaded and package.preload as they were. → { [name] = table } |
-- nil, { module, file, error }.
local function load_set(sources, expected)
  local saved_loaded, saved_preload = {}, {}
  local tables, problem = {}, nil
  local chunks = {}
  for _, name in ipairs(M.LIVE) do
    local source = sources[name]
    local chunk, err = loadstring(source.text, "@" .. source.file)
    if not chunk then
      return nil, { module = name, file = source.file, error = err }
    end
    chunks[name] = chunk
  end
  for _, name in ipairs(M.LIVE) do
    saved_loaded[name], saved_preload[name] = package.loaded[name], package.preload[name]
    package.loaded[name] = nil
    package.preload[name] = chunks[name]
  end
  for _, name in ipairs(M.LIVE) do
    local ok, module = xpcall(require, debug.traceback, name)
    if not ok then
      problem = { module = name, file = sources[name].file, error = error_message(module) }
      break
    end
    if type(module) ~= "table" then
      problem = { module = name, file = sources[name].file,
        error = "returned " .. type(module) .. ", not the module table" }
      break
    end
    for _, function_name in ipairs(expected and expected[name] or {}) do
      if type(module[function_name]) ~= "function" then
        problem = { module = name, file = sources[name].file, error = string.format(
          "no function %s (the built-in module has %s)", function_name, table.concat(expected[name], ", ")) }
        break
      end
    end
    if problem then
      break
    end
    tables[name] = module
  end
  for _, name in ipairs(M.LIVE) do
    package.loaded[name], package.preload[name] = saved_loaded[name], saved_preload[name]
  end
  if problem then
    return nil, problem
  end
  return tables
end

-- The reconciler's modules (kind → table) of a loaded set.
local function kind_modules(tables)
  local modules = {}
  for kind, name in pairs(reconciler.MODULES) do
    modules[kind] = tables[name]
  end
  return modules
end

-- Every *.lua file below dir (through symlinks, as a ConfigMap mount makes
-- them; not hidden entries such as ..data), as { [relative path] = text }.
local function scan(dir, relative, depth, out)
  local ok, iterator, state = pcall(lfs.dir, dir)
  if not ok then
    return out
  end
  for name in iterator, state do
    if name:sub(1, 1) ~= "." then
      local path, rel = dir .. "/" .. name, relative == "" and name or relative .. "/" .. name
      local mode = lfs.attributes(path, "mode")
      if mode == "directory" and depth > 0 then
        scan(path, rel, depth - 1, out)
      elseif mode == "file" and name:match("%.lua$") then
        out[rel] = (read_text(path))
      end
    end
  end
  return out
end

-- "balancing/reconcile/service.lua" → "balancing.reconcile.service";
-- ".../init.lua" names its directory's module.
local function module_name(relative)
  return (relative:gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", "."))
end

-- new{ dir, builtin_dir } → the live set, running the built-in modules (the
-- directory's are taken at the first reload, checked like any change).
-- Raises when the built-in modules do not load: the installation is broken.
function M.new(opts)
  local self = setmetatable({ dir = opts.dir, builtin_dir = opts.builtin_dir, builtin = {}, warned = {} },
    Overrides)
  for _, name in ipairs(M.LIVE) do
    local file = module_file(opts.builtin_dir, name)
    local text, err = read_text(file)
    if not text then
      error("built-in module " .. name .. " not read: " .. tostring(err))
    end
    self.builtin[name] = { file = file, text = text }
  end
  local tables, problem = load_set(self.builtin, nil)
  if not tables then
    error(string.format("built-in module %s does not load: %s", problem.module, problem.error))
  end
  self.expected = {}
  for name, module in pairs(tables) do
    self.expected[name] = function_names(module)
  end
  self.modules = kind_modules(tables)
  self.running = self.builtin
  -- what the other modules were when the agent started (they were required
  -- from the directory then)
  self.started_with = scan(self.dir, "", SCAN_DEPTH, {})
  return self
end

-- The live modules as the directory holds them now: { [name] = { file, text,
-- override = true | nil } }, the built-in file where it has none.
function Overrides:sources()
  local sources = {}
  for _, name in ipairs(M.LIVE) do
    local file = module_file(self.dir, name)
    local text = read_text(file) -- (absent or unreadable: the built-in module)
    if text then
      sources[name] = { file = file, text = text, override = true }
    else
      sources[name] = self.builtin[name]
    end
  end
  return sources
end

local function same_sources(a, b)
  if not a or not b then
    return false
  end
  for _, name in ipairs(M.LIVE) do
    if a[name].file ~= b[name].file or a[name].text ~= b[name].text then
      return false
    end
  end
  return true
end

-- One line, once per content, for each module the agent cannot swap live
-- whose file changed since it started.
function Overrides:say_not_live()
  local now = scan(self.dir, "", SCAN_DEPTH, {})
  local paths = {}
  for path in pairs(now) do
    paths[#paths + 1] = path
  end
  for path in pairs(self.started_with) do
    if now[path] == nil then
      paths[#paths + 1] = path
    end
  end
  table.sort(paths)
  for _, path in ipairs(paths) do
    local name = module_name(path)
    if not IS_LIVE[name] then
      local text, started = now[path], self.started_with[path]
      if text == started then
        self.warned[path] = nil -- back as it was: a later change is said again
      elseif self.warned[path] ~= (text or false) then
        self.warned[path] = text or false
        log.warn("Lua override not swapped live: restart the agent to use it", { module = name,
          file = self.dir .. "/" .. path, change = started == nil and "added" or text == nil and "removed"
            or "changed" })
      end
    end
  end
end

-- The changed modules' names and the override files of a set, for the log.
local function describe(sources, running)
  local changed, files = {}, {}
  for _, name in ipairs(M.LIVE) do
    if sources[name].text ~= running[name].text or sources[name].file ~= running[name].file then
      changed[#changed + 1] = name
    end
    if sources[name].override then
      files[#files + 1] = sources[name].file
    end
  end
  return table.concat(changed, ","), table.concat(files, ",")
end

-- reload(dry_run) → "accepted" | "refused" | nil when the live modules are
-- those running (or those last refused). dry_run(modules) → nil, or the
-- first failure { owner, module, error } of reconciling every owner with
-- those kind modules. Accepted: self.modules is the new set (and
-- package.loaded has its tables, for later requires). Refused: one error
-- line; the second value is { module, file, error[, owner] }.
function Overrides:reload(dry_run)
  self:say_not_live()
  local sources = self:sources()
  if same_sources(sources, self.running) or same_sources(sources, self.refused) then
    return nil
  end
  local tables, problem = load_set(sources, self.expected)
  if tables and dry_run then
    local failure = dry_run(kind_modules(tables))
    if failure then
      local message = error_message(failure.error)
      -- the file at fault, when the error names one of the set's files (a
      -- helper's error surfaces through the module that called it)
      local file = sources[failure.module] and sources[failure.module].file
      for _, name in ipairs(M.LIVE) do
        local at = sources[name].file
        if message:sub(1, #at + 1) == at .. ":" then
          file = at
        end
      end
      problem = { module = failure.module, file = file, owner = failure.owner,
        error = "dry reconcile of " .. tostring(failure.owner) .. ": " .. message }
    end
  end
  if problem then
    self.refused = sources
    log.error("Lua override refused: the running modules stay", { module = problem.module, file = problem.file,
      owner = problem.owner, error = tostring(problem.error) })
    return "refused", problem
  end
  local changed, files = describe(sources, self.running)
  self.running, self.refused = sources, nil
  self.modules = kind_modules(tables)
  for name, module in pairs(tables) do
    package.loaded[name] = module
  end
  log.info("Lua overrides loaded: every owner is reconciled again", { modules = changed,
    overrides = files ~= "" and files or "none (built-in)" })
  return "accepted"
end

M.Overrides = Overrides

return M
