-- The state the agent leaves for inspect (balancing.agent_state): who holds
-- which service ID, why an owner programs less, written only when that
-- changes, atomically, and read back as inspect reads it.
local agent_state = require("balancing.agent_state")
local fx = require("fixtures.services.builders")
local pfx = require("fixtures.policies.builders")
local log = require("balancing.log")
local reconciler = require("balancing.reconciler")
local scratch = require("helpers.scratch")

local NODE = "node-1"

describe("agent state", function()
  local dir, store, driver, state

  before_each(function()
    dir = scratch.temp_dir()
    store = fx.small_store(NODE)
    assert(store:upsert(pfx.dns_redirect())) -- "lr": no app=dns pod on node-1
    driver = reconciler.new({ store = store, node_name = NODE, quiet = true, keep_entries = false })
    state = agent_state.new({ path = dir .. "/run/state.json", node_name = NODE, bpffs = "/sys/fs/bpf/x" })
  end)

  after_each(function()
    scratch.remove_dir(dir)
  end)

  local function round()
    local r = driver:run(store:take_dirty())
    state:record(r, driver)
    return r
  end

  local function by_name(list)
    local out = {}
    for _, item in ipairs(list) do
      out[item.kind .. " " .. (item.namespace ~= "" and item.namespace .. "/" or "") .. item.name] = item
    end
    return out
  end

  it("names every ID holder and says why an owner programs nothing, creating the run directory", function()
    round()
    assert.is_true(state:flush(store))
    local document = assert(agent_state.read(dir .. "/run/state.json"))
    assert.equals(NODE, document.nodeName)
    assert.equals("/sys/fs/bpf/x", document.bpffs)
    local owners = by_name(document.owners)
    assert.equals(store.ids.services["default/web"], owners["Service default/web"].id)
    assert.equals(store.ids.services["default/api"], owners["Service default/api"].id)
    assert.equals(10, owners["LocalRedirectPolicy lr"].id)
    local problems = by_name(document.problems)
    assert.same({ "not programmed: no local backend on this node (no running pod with an IPv4 address on node "
      .. "node-1 matches the backend selector)" }, problems["LocalRedirectPolicy lr"].notes)
    assert.is_nil(problems["Service default/web"]) -- programmed: nothing to say
  end)

  it("keeps a rejection's reason", function()
    local broken = fx.service{ name = "broken", cluster_ip = "10.96.0.30" }
    broken.spec.ports[1].port = 70000
    assert(store:upsert(broken))
    round()
    assert(state:flush(store))
    local problems = by_name(assert(agent_state.read(dir .. "/run/state.json")).problems)
    assert.matches("port", problems["Service default/broken"].rejections[1])
  end)

  it("rewrites the file only when an ID or an owner's problems changed", function()
    round()
    assert(state:flush(store))
    local path = dir .. "/run/state.json"
    assert(os.remove(path))
    -- an endpoint change: IDs and problems as before, so no write
    assert(store:upsert(fx.slice{ service = "web", endpoints = { { address = "10.244.1.6", node = NODE } } }))
    round()
    assert(state:flush(store))
    assert.is_nil(io.open(path, "r"))
    -- a new Service: a new ID
    assert(store:upsert(fx.service{ name = "new", cluster_ip = "10.96.0.40" }))
    round()
    assert(state:flush(store))
    assert.truthy(by_name(assert(agent_state.read(path)).owners)["Service default/new"])
    -- the policy's backend pod comes: its note goes
    assert(os.remove(path))
    assert(store:upsert(pfx.pod{ name = "dns-1", node = NODE, ip = "10.244.1.53", labels = { app = "dns" } }))
    round()
    assert(state:flush(store))
    assert.is_nil(by_name(assert(agent_state.read(path)).problems)["LocalRedirectPolicy lr"])
  end)

  it("says once that it cannot write, and writes again once it can", function()
    local lines = {}
    log.set_sink(function(line) lines[#lines + 1] = line end)
    local blocked = dir .. "/file"
    assert(io.open(blocked, "w")):close()
    local stuck = agent_state.new({ path = blocked .. "/state.json", node_name = NODE, bpffs = "/x" })
    round()
    local ok, err = stuck:flush(store)
    assert.is_nil(ok)
    assert.truthy(err)
    stuck.dirty = true
    assert.is_nil((stuck:flush(store)))
    log.set_sink(nil)
    assert.equals(1, #lines)
    assert.matches("agent state not written", lines[1])
    assert(os.remove(blocked))
    stuck.dirty = true
    assert.is_true(stuck:flush(store))
  end)

  it("reads nothing that is not a state of its version", function()
    local path = dir .. "/bad.json"
    local file = assert(io.open(path, "w"))
    file:write('{"version": 99}')
    file:close()
    assert.is_nil((agent_state.read(path)))
    assert.is_nil((agent_state.read(dir .. "/missing.json")))
  end)
end)
