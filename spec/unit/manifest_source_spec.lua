-- The standalone source (`--manifests DIR`, issue 7): the directory read
-- again when it changes — files added, changed, removed, replaced by rename,
-- a ConfigMap's symlink swap — and the store made equal to it; bad input
-- never loses other state.
local manifest_source = require("balancing.manifest_source")
local Store = require("balancing.store")
local scratch = require("helpers.scratch")
local log = require("balancing.log")

local function service_yaml(name, ip)
  return table.concat({
    "apiVersion: v1", "kind: Service",
    "metadata: {name: " .. name .. ", namespace: default}",
    "spec: {clusterIP: " .. ip .. ", ports: [{port: 80}]}", "" }, "\n")
end

local function names(store)
  local out = {}
  for i, obj in ipairs(store:list("Service")) do
    out[i] = obj.metadata.name .. "=" .. obj.spec.clusterIP
  end
  return out
end

local function sh(command)
  assert(os.execute(command) == 0, command)
end

describe("manifest_source", function()
  local dir, store, src, level
  before_each(function()
    dir = scratch.temp_dir()
    store = Store.new{ node_name = "node-1" }
    src = manifest_source.new(store, dir)
    level = log.level()
    log.set_level("error") -- the refusals below log warnings: not this spec's output
  end)
  after_each(function()
    log.set_level(level)
    scratch.remove_dir(dir)
  end)

  it("follows files added, changed and removed", function()
    scratch.write_file(dir .. "/a.yaml", service_yaml("a", "10.96.0.1"))
    assert(src:sync())
    assert.same({ "a=10.96.0.1" }, names(store))
    scratch.write_file(dir .. "/b.yaml", service_yaml("b", "10.96.0.2"))
    scratch.write_file(dir .. "/a.yaml", service_yaml("a", "10.96.0.5"))
    assert(src:sync())
    assert.same({ "a=10.96.0.5", "b=10.96.0.2" }, names(store))
    os.remove(dir .. "/a.yaml")
    local report = assert(src:sync())
    assert.equals(1, report.deleted)
    assert.same({ "b=10.96.0.2" }, names(store))
  end)

  it("follows an editor's rename-replace", function()
    scratch.write_file(dir .. "/a.yaml", service_yaml("a", "10.96.0.1"))
    assert(src:sync())
    scratch.write_file(dir .. "/.a.yaml.swp", service_yaml("a", "10.96.0.7"))
    sh("mv " .. scratch.quote(dir .. "/.a.yaml.swp") .. " " .. scratch.quote(dir .. "/a.yaml"))
    assert(src:sync())
    assert.same({ "a=10.96.0.7" }, names(store))
  end)

  it("follows a ConfigMap's symlink swap (..data pointing at a new directory)", function()
    scratch.write_file(dir .. "/..2026_11_30_1/a.yaml", service_yaml("a", "10.96.0.1"))
    sh("cd " .. scratch.quote(dir) .. " && ln -s ..2026_11_30_1 ..data && ln -s ..data/a.yaml a.yaml")
    assert(src:sync())
    assert.same({ "a=10.96.0.1" }, names(store))
    scratch.write_file(dir .. "/..2026_11_30_2/a.yaml", service_yaml("a", "10.96.0.9"))
    sh("cd " .. scratch.quote(dir) .. " && ln -s ..2026_11_30_2 ..data_tmp && mv -T ..data_tmp ..data"
      .. " && rm -rf ..2026_11_30_1")
    assert(src:sync())
    assert.same({ "a=10.96.0.9" }, names(store))
  end)

  it("keeps what a file gave when it last parsed, when it no longer does", function()
    scratch.write_file(dir .. "/a.yaml", service_yaml("a", "10.96.0.1"))
    scratch.write_file(dir .. "/b.yaml", service_yaml("b", "10.96.0.2"))
    assert(src:sync())
    scratch.write_file(dir .. "/a.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: a\n")
    scratch.write_file(dir .. "/b.yaml", service_yaml("b", "10.96.0.3"))
    local report = assert(src:sync())
    assert.equals(1, #report.problems)
    assert.equals("a.yaml", report.problems[1].file)
    assert.same({ "a=10.96.0.1", "b=10.96.0.3" }, names(store))
  end)

  it("changes nothing when the directory cannot be read", function()
    scratch.write_file(dir .. "/a.yaml", service_yaml("a", "10.96.0.1"))
    assert(src:sync())
    local moved = dir .. "-moved"
    sh("mv " .. scratch.quote(dir) .. " " .. scratch.quote(moved))
    local report, err = src:sync()
    sh("mv " .. scratch.quote(moved) .. " " .. scratch.quote(dir))
    assert.is_nil(report)
    assert.matches("manifest directory", err, 1, true)
    assert.same({ "a=10.96.0.1" }, names(store))
  end)

  it("marks no owner dirty when nothing changed", function()
    scratch.write_file(dir .. "/a.yaml", service_yaml("a", "10.96.0.1"))
    assert(src:sync())
    store:take_dirty()
    assert(src:sync())
    assert.same({}, store:take_dirty())
  end)

  it("ignores kinds the agent does not read", function()
    scratch.write_file(dir .. "/d.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n")
    local report = assert(src:sync())
    assert.equals(0, report.objects)
    assert.same({}, report.problems)
  end)
end)
