-- The reconcile driver shared by plan and the agent (ARCHITECTURE.md "The
-- C ↔ Lua boundary"): dirty owners in, a protected call per owner, desired
-- entries, rejections and notices out; a failing owner keeps its last entries.
local cjson = require("cjson")
local reconciler = require("balancing.reconciler")
local log = require("balancing.log")
local fx = require("fixtures.services.builders")
local decode = require("fixtures.services.decode")

local NODE = "node-1"

local function new_store()
  return fx.small_store(NODE)
end

-- Runs fn with the log captured; returns the decoded lines.
local function logged(fn)
  local lines = {}
  local level = log.level()
  log.set_sink(function(line) lines[#lines + 1] = cjson.decode(line) end)
  log.set_level("debug")
  local ok, err = pcall(fn)
  log.set_sink(nil)
  log.set_level(level)
  assert(ok, err)
  return lines
end

-- The real service module, failing for the Services named in fail.
local function service_failing_for(fail)
  local real = require("balancing.reconcile.service")
  return {
    desired = function(store, ctx, namespace, name)
      if fail[name] then
        error(name .. " is not welcome here")
      end
      return real.desired(store, ctx, namespace, name)
    end,
  }
end

describe("reconciler", function()
  it("reconciles every owner it is given, with the real modules", function()
    local store = new_store()
    local driver = reconciler.new{ store = store, node_name = NODE }
    local round = driver:run(store:take_dirty())
    assert.same({}, round.failures)
    assert.same({ "10.96.0.10:80/TCP ClusterIP" }, decode.keys(round.changed["service/default/web"]))
    assert.same({ "10.96.0.20:80/TCP ClusterIP" }, decode.keys(round.changed["service/default/api"]))
    assert.is_table(round.changed.node.node_ips)
    assert.equals(round.changed["service/default/web"], driver.entries["service/default/web"])
  end)

  it("counts what every owner programs, and keeps no entries when told not to (the agent)", function()
    local store = new_store()
    local kept = reconciler.new{ store = store, node_name = NODE }
    local counting = reconciler.new{ store = store, node_name = NODE, keep_entries = false }
    local owners = store:owners()
    kept:run(owners)
    local round = counting:run(owners)
    assert.same({}, round.failures)
    assert.is_table(round.changed["service/default/web"]) -- apply still gets them
    assert.same({}, counting.entries)
    assert.same({}, counting:all_entries())
    -- web: one frontend with one backend; api: one frontend, no endpoint
    local frontends, backends, count = counting:programmed()
    assert.same({ 2, 1, 3 }, { frontends, backends, count })
    assert.same({ frontends, backends, count }, { kept:programmed() })
    counting:forget("service/default/web")
    assert.same({ 1, 0, 2 }, { counting:programmed() })
  end)

  it("splits an owner set into sorted parts of at most a size (a large round, a dry run)", function()
    local owners = { ["service/a/x"] = true, ["node"] = true, ["service/b/y"] = true, ["balancing/p"] = true,
      ["service/a/w"] = true }
    local parts = reconciler.parts(owners, 2)
    assert.same({ { ["balancing/p"] = true, node = true }, { ["service/a/w"] = true, ["service/a/x"] = true },
      { ["service/b/y"] = true } }, parts)
    assert.same({}, reconciler.parts({}, 2))
  end)

  it("reconciles only the dirty owners on the next round", function()
    local store = new_store()
    local driver = reconciler.new{ store = store, node_name = NODE }
    driver:run(store:take_dirty())
    assert(store:upsert(fx.slice{ service = "api", endpoints = { { address = "10.244.2.7" } } }))
    local round = driver:run(store:take_dirty())
    local owners = {}
    for owner in pairs(round.changed) do
      owners[#owners + 1] = owner
    end
    assert.same({ "service/default/api" }, owners)
    assert.equals(1, decode.find(round.changed["service/default/api"], "10.96.0.20:80/TCP").total)
  end)

  it("gives a deleted object empty entries, so that apply removes what it wrote", function()
    local store = new_store()
    local driver = reconciler.new{ store = store, node_name = NODE }
    driver:run(store:take_dirty())
    assert(store:delete(fx.service{ name = "web", cluster_ip = "10.96.0.10" }))
    local round = driver:run(store:take_dirty())
    assert.same({}, round.changed["service/default/web"].frontends)
  end)

  it("a module failing for one owner: one log line naming owner and module with a traceback; "
    .. "that owner keeps its last entries, the others go on", function()
    local store = new_store()
    local fail = {}
    local driver = reconciler.new{ store = store, node_name = NODE,
      modules = { Service = service_failing_for(fail) } }
    driver:run(store:take_dirty())
    local before = driver.entries["service/default/web"]
    fail.web = true
    store:mark_dirty("service/default/web")
    store:mark_dirty("service/default/api")
    local round
    local lines = logged(function()
      round = driver:run(store:take_dirty())
    end)
    assert.equals(1, #lines)
    assert.equals("error", lines[1].level)
    assert.equals("reconcile failed", lines[1].msg)
    assert.equals("service/default/web", lines[1].owner)
    assert.equals("balancing.reconcile.service", lines[1].module)
    assert.matches("web is not welcome here", lines[1].error, 1, true)
    assert.matches("stack traceback", lines[1].error, 1, true)
    assert.is_nil(round.changed["service/default/web"])
    assert.equals(before, driver.entries["service/default/web"])
    assert.is_table(round.changed["service/default/api"])
    assert.same({ { owner = "service/default/web", module = "balancing.reconcile.service",
      error = round.failures[1].error } }, round.failures)
  end)

  it("refuses a result that is not the owner's entries, as a failure of that owner", function()
    local store = new_store()
    local driver = reconciler.new{ store = store, node_name = NODE, modules = { Service = {
      desired = function(_, _, _, name)
        if name == "web" then
          return "nothing"
        end
        return { owner = "service/default/someone-else", frontends = {} }
      end,
    } } }
    local round
    local lines = logged(function()
      round = driver:run({ ["service/default/web"] = true, ["service/default/api"] = true })
    end)
    assert.equals(2, #round.failures)
    assert.matches("rather than entries", round.failures[2].error, 1, true) -- web, after api
    assert.matches("someone%-else", round.failures[1].error)
    assert.equals(2, #lines)
    assert.same({}, round.changed)
  end)

  it("logs a module's notices at their level, with the owner and module", function()
    local store = new_store()
    assert(store:upsert(fx.service{ name = "sig", cluster_ip = "10.96.0.30",
      ports = { { name = "sig", port = 3868, protocol = "SCTP" }, { name = "http", port = 80 } } }))
    local driver = reconciler.new{ store = store, node_name = NODE }
    local round
    local lines = logged(function()
      round = driver:run({ ["service/default/sig"] = true })
    end)
    assert.equals(1, #round.notices)
    assert.equals(1, #lines)
    assert.equals("info", lines[1].level)
    assert.equals("service/default/sig", lines[1].owner)
    assert.equals("balancing.reconcile.service", lines[1].module)
    assert.equals("SCTP", lines[1].protocol)
  end)

  it("a module that fails to load is logged once; its owners keep their entries, the others go on", function()
    local store = new_store()
    package.loaded["balancing.reconcile.broken_for_spec"] = nil
    local modules = reconciler.MODULES
    local saved = modules.Service
    modules.Service = "balancing.reconcile.broken_for_spec" -- no such module
    local driver, round
    local ok, err = pcall(function()
      local lines = logged(function()
        driver = reconciler.new{ store = store, node_name = NODE }
        round = driver:run(store:take_dirty())
      end)
      assert.equals(1, #lines)
      assert.equals("module failed to load", lines[1].msg)
      assert.equals("balancing.reconcile.broken_for_spec", lines[1].module)
    end)
    modules.Service = saved
    assert(ok, err)
    assert.equals(2, #round.failures)
    assert.is_nil(round.changed["service/default/web"])
    assert.is_table(round.changed.node)
  end)

  it("a node context that fails fails every owner of the round, each keeping its entries", function()
    local store = new_store()
    local driver = reconciler.new{ store = store, node_name = NODE, modules = { Node = {
      context = function() error("no context today") end,
      desired = function() error("unreachable") end,
    } } }
    local round
    logged(function()
      round = driver:run(store:take_dirty())
    end)
    assert.same({}, round.changed)
    assert.equals(3, #round.failures)
    assert.matches("no context today", round.failures[1].error, 1, true)
    assert.equals("balancing.reconcile.node", round.failures[1].module)
  end)

  it("collects every owner's rejections, in owner order", function()
    local store = new_store()
    assert(store:upsert(fx.service{ name = "bad", cluster_ip = "10.96.0.40", external_ips = { "0.0.0.0" } }))
    local driver = reconciler.new{ store = store, node_name = NODE }
    driver:run(store:owners())
    local rejections = driver:all_rejections()
    assert.equals(1, #rejections)
    assert.equals("default/bad", rejections[1].name)
    assert.matches("spec.externalIPs[0]", rejections[1].reason, 1, true)
  end)
end)
