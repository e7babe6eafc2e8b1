-- Live Lua overrides (ARCHITECTURE.md "The C ↔ Lua boundary"; issue 8): a
-- changed reconcile module is loaded and checked — it compiles, returns the
-- module table with the built-in module's functions, survives a dry
-- reconcile of the store — before it replaces the running one; a broken one
-- is refused with one log line naming the file and the error, and the old
-- one stays. Modules that cannot be swapped live are said once.
local cjson = require("cjson")
local overrides = require("balancing.overrides")
local reconciler = require("balancing.reconciler")
local log = require("balancing.log")
local scratch = require("helpers.scratch")
local fx = require("fixtures.services.builders")
local decode = require("fixtures.services.decode")

local NODE = "node-1"
local SERVICE_FILE = "/balancing/reconcile/service.lua"

-- Wraps the built-in service module: no frontend for Services named "web".
local DROP_WEB = [[
local builtin = dofile("lua/balancing/reconcile/service.lua")
local M = {}
function M.desired(store, ctx, namespace, name)
  local entries, rejections, notices = builtin.desired(store, ctx, namespace, name)
  if name == "web" then
    entries.frontends = {}
  end
  return entries, rejections, notices
end
return M
]]

local function new_store()
  return fx.small_store(NODE)
end

-- Runs fn with the log captured; returns fn's result and the decoded lines.
local function logged(fn)
  local lines = {}
  log.set_sink(function(line) lines[#lines + 1] = cjson.decode(line) end)
  local ok, result, detail = pcall(fn)
  log.set_sink(nil)
  assert(ok, result)
  return lines, result, detail
end

describe("balancing.overrides", function()
  local dir, store, live
  before_each(function()
    dir = scratch.temp_dir()
    store = new_store()
    live = overrides.new{ dir = dir, builtin_dir = "lua" }
  end)
  after_each(function()
    scratch.remove_dir(dir)
  end)

  local function dry_run(modules)
    return reconciler.dry_run{ store = store, node_name = NODE, modules = modules }
  end

  -- What the running Service module gives for default/web.
  local function web_keys()
    local driver = reconciler.new{ store = store, node_name = NODE, modules = live.modules }
    return decode.keys(driver:run({ ["service/default/web"] = true }).changed["service/default/web"])
  end

  it("runs the built-in modules until the directory has overrides, and finds nothing new without", function()
    assert.same({ "10.96.0.10:80/TCP ClusterIP" }, web_keys())
    local lines, outcome = logged(function() return live:reload(dry_run) end)
    assert.is_nil(outcome)
    assert.same({}, lines)
  end)

  it("accepts an override that passes every check, with one line naming the module", function()
    scratch.write_file(dir .. SERVICE_FILE, DROP_WEB)
    local lines, outcome = logged(function() return live:reload(dry_run) end)
    assert.equals("accepted", outcome)
    assert.same({}, web_keys())
    assert.equals(1, #lines)
    assert.equals("info", lines[1].level)
    assert.equals("balancing.reconcile.service", lines[1].modules)
    assert.equals(dir .. SERVICE_FILE, lines[1].overrides)
    -- the same content again is nothing new
    lines, outcome = logged(function() return live:reload(dry_run) end)
    assert.is_nil(outcome)
    assert.same({}, lines)
  end)

  it("goes back to the built-in module when the override is removed", function()
    scratch.write_file(dir .. SERVICE_FILE, DROP_WEB)
    logged(function() return live:reload(dry_run) end)
    os.remove(dir .. SERVICE_FILE)
    local _, outcome = logged(function() return live:reload(dry_run) end)
    assert.equals("accepted", outcome)
    assert.same({ "10.96.0.10:80/TCP ClusterIP" }, web_keys())
  end)

  it("refuses an override that does not compile: one line with the file and the error, the old one stays", function()
    scratch.write_file(dir .. SERVICE_FILE, DROP_WEB)
    logged(function() return live:reload(dry_run) end)
    scratch.write_file(dir .. SERVICE_FILE, "local M = {\nreturn M\n")
    local lines, outcome, problem = logged(function() return live:reload(dry_run) end)
    assert.equals("refused", outcome)
    assert.equals(1, #lines)
    assert.equals("error", lines[1].level)
    assert.equals("Lua override refused: the running modules stay", lines[1].msg)
    assert.equals("balancing.reconcile.service", lines[1].module)
    assert.equals(dir .. SERVICE_FILE, lines[1].file)
    assert.matches(dir .. SERVICE_FILE .. ":2:", lines[1].error, 1, true)
    assert.equals(lines[1].error, problem.error)
    assert.same({}, web_keys()) -- the accepted override still runs
    -- said once: the same broken content is not tried again
    lines, outcome = logged(function() return live:reload(dry_run) end)
    assert.is_nil(outcome)
    assert.same({}, lines)
  end)

  it("refuses a module that raises while it loads", function()
    scratch.write_file(dir .. SERVICE_FILE, "error('not today')\n")
    local lines, outcome = logged(function() return live:reload(dry_run) end)
    assert.equals("refused", outcome)
    assert.matches(SERVICE_FILE .. ":1: not today", lines[1].error, 1, true)
    assert.is_nil(lines[1].error:find("stack traceback", 1, true))
  end)

  it("refuses a module that is not a table with the built-in module's functions", function()
    scratch.write_file(dir .. "/balancing/reconcile/node.lua", "return { desired = function() end }\n")
    local lines, outcome = logged(function() return live:reload(dry_run) end)
    assert.equals("refused", outcome)
    assert.equals("balancing.reconcile.node", lines[1].module)
    assert.matches("no function context", lines[1].error, 1, true)
    scratch.write_file(dir .. "/balancing/reconcile/node.lua", "return 42\n")
    lines, outcome = logged(function() return live:reload(dry_run) end)
    assert.equals("refused", outcome)
    assert.matches("returned number, not the module table", lines[1].error, 1, true)
  end)

  it("refuses a module that fails in the dry reconcile, naming the owner; nothing else is logged", function()
    scratch.write_file(dir .. SERVICE_FILE, [[
local M = {}
function M.desired(_, _, namespace, name)
  if name == "api" then
    error("api is not welcome")
  end
  return { owner = "service/" .. namespace .. "/" .. name, frontends = {} }, {}, {}
end
return M
]])
    local lines, outcome, problem = logged(function() return live:reload(dry_run) end)
    assert.equals("refused", outcome)
    assert.equals(1, #lines)
    assert.equals("service/default/api", lines[1].owner)
    assert.equals("service/default/api", problem.owner)
    assert.equals(dir .. SERVICE_FILE, lines[1].file)
    assert.matches("dry reconcile of service/default/api: " .. dir .. SERVICE_FILE .. ":4: api is not welcome",
      lines[1].error, 1, true)
    assert.same({ "10.96.0.10:80/TCP ClusterIP" }, web_keys()) -- the built-in one stays
  end)

  it("names a broken helper's file, and loads the modules that use it again with the new helper", function()
    -- an endpoints helper whose categorize keeps no endpoint: service.lua,
    -- loaded again with it, programs no backend
    scratch.write_file(dir .. "/balancing/reconcile/endpoints.lua", [[
local builtin = dofile("lua/balancing/reconcile/endpoints.lua")
local M = setmetatable({}, { __index = builtin })
for key, value in pairs(builtin) do
  M[key] = value
end
function M.categorize()
  return {}, {}
end
return M
]])
    local _, outcome = logged(function() return live:reload(dry_run) end)
    assert.equals("accepted", outcome)
    local driver = reconciler.new{ store = store, node_name = NODE, modules = live.modules }
    local entries = driver:run({ ["service/default/web"] = true }).changed["service/default/web"]
    assert.equals(0, #entries.frontends[1].backends)

    scratch.write_file(dir .. "/balancing/reconcile/endpoints.lua", "return { from_slices = 1 }\n")
    local lines
    lines, outcome = logged(function() return live:reload(dry_run) end)
    assert.equals("refused", outcome)
    assert.equals("balancing.reconcile.endpoints", lines[1].module)
    assert.equals(dir .. "/balancing/reconcile/endpoints.lua", lines[1].file)
  end)

  it("leaves package.loaded as it was after a refused set", function()
    local before = package.loaded["balancing.reconcile.service"]
    scratch.write_file(dir .. SERVICE_FILE, "error('no')\n")
    logged(function() return live:reload(dry_run) end)
    assert.equals(before, package.loaded["balancing.reconcile.service"])
  end)

  it("says once that a module it cannot swap live changed, and runs on", function()
    scratch.write_file(dir .. "/balancing/store.lua", "return {}\n")
    local lines, outcome = logged(function() return live:reload(dry_run) end)
    assert.is_nil(outcome)
    assert.equals(1, #lines)
    assert.equals("warn", lines[1].level)
    assert.equals("Lua override not swapped live: restart the agent to use it", lines[1].msg)
    assert.equals("balancing.store", lines[1].module)
    assert.equals(dir .. "/balancing/store.lua", lines[1].file)
    assert.equals("added", lines[1].change)
    lines = logged(function() return live:reload(dry_run) end)
    assert.same({}, lines)
    scratch.write_file(dir .. "/balancing/store.lua", "return { changed = true }\n")
    lines = logged(function() return live:reload(dry_run) end)
    assert.equals(1, #lines)
    assert.equals("added", lines[1].change) -- still not what the agent started with
  end)
end)
