-- The default map sizes of bpf/balancing.h hold the 10,000-Service cluster
-- of scripts/bench/reconcile (issue 7, "Map sizes") with room to spare:
-- every NodePort, ingress and external IP repeats its Service's backends, so
-- backend slots grow faster than endpoints.
package.path = "scripts/bench/?.lua;" .. package.path
local ffi = require("ffi")
require("balancing.abi")
local cluster_module = require("reconcile_cluster")
local full = require("full_reconcile")
local Store = require("balancing.store")
local reconciler = require("balancing.reconciler")
local log = require("balancing.log")

-- room to spare: the defaults take at least twice what the cluster needs
local HEADROOM = 2

describe("default map sizes", function()
  local frontends, slots, node_ips

  setup(function()
    local level = log.level()
    log.set_level("error")
    local cluster = cluster_module.generate(full.SCALES.big)
    local store = Store.new{ node_name = full.NODE_NAME }
    for _, obj in ipairs(cluster.objects) do
      assert(store:upsert(obj))
    end
    local driver = reconciler.new{ store = store, node_name = full.NODE_NAME }
    local round = driver:run(store:owners())
    log.set_level(level)
    assert.same({}, round.failures)
    frontends, slots, node_ips = 0, 0, 0
    for _, entries in pairs(round.changed) do
      frontends = frontends + #entries.frontends
      for _, frontend in ipairs(entries.frontends) do
        slots = slots + #frontend.backends
      end
      node_ips = node_ips + #(entries.node_ips or {})
    end
  end)

  it("map_service holds every frontend of the 10,000-Service cluster twice over", function()
    assert.is_true(frontends > 20000) -- the cluster is the one the benchmark describes
    assert.is_true(ffi.C.DEFAULT_MAX_SERVICES >= HEADROOM * frontends,
      string.format("%d frontends, DEFAULT_MAX_SERVICES %d", frontends, ffi.C.DEFAULT_MAX_SERVICES))
  end)

  it("map_backend holds every backend slot of the 10,000-Service cluster twice over", function()
    assert.is_true(slots > 200000)
    assert.is_true(ffi.C.DEFAULT_MAX_BACKENDS >= HEADROOM * slots,
      string.format("%d backend slots, DEFAULT_MAX_BACKENDS %d", slots, ffi.C.DEFAULT_MAX_BACKENDS))
  end)

  it("map_node_ip holds every node address of the cluster twice over", function()
    assert.is_true(node_ips > 0)
    assert.is_true(ffi.C.DEFAULT_MAX_NODE_IPS >= HEADROOM * node_ips)
  end)
end)
