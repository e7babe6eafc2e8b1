-- The datapath's per-owner counters as /metrics samples
-- (balancing_translations_total{type,owner,result}, CONTRACTS.md): labels from
-- the ID registry and the header's reason codes. The kernel side is
-- spec/core/datapath_counters_spec.lua.
local ffi = require("ffi")
local ids = require("balancing.ids")
local translation_counters = require("balancing.translation_counters")
local C = ffi.C

local function new_registry()
  local registry = ids.new()
  local web = registry:service_id({ kind = "Service", metadata = { namespace = "demo", name = "web", uid = "u1" } })
  registry:register_policy({ kind = "LocalRedirectPolicy",
    metadata = { name = "node-local-dns", annotations = { ["balancing.elf.io/serviceId"] = "7" } } })
  return registry, web
end

local function by_labels(samples)
  local out = {}
  for _, sample in ipairs(samples) do
    local labels = sample[1]
    out[labels.type .. "|" .. labels.owner .. "|" .. labels.result] = sample[2]
  end
  return out
end

describe("translation_counters.samples", function()
  it("labels each counter with its type, its owner's name and ok or the failure reason", function()
    local registry, web = new_registry()
    local samples = translation_counters.samples({
      { service_id = web, nat_type = C.NAT_TYPE_SERVICE, reason = C.REASON_OK, count = 5 },
      { service_id = web, nat_type = C.NAT_TYPE_SERVICE, reason = C.REASON_NO_BACKEND, count = 2 },
      { service_id = 7, nat_type = C.NAT_TYPE_LOCAL_REDIRECT, reason = C.REASON_REDIRECT_LIMIT, count = 1 },
    }, registry)

    assert.same({
      ["service|demo/web|ok"] = 5,
      ["service|demo/web|no backend"] = 2,
      ["localRedirect|node-local-dns|redirect limit reached, sent untranslated"] = 1,
    }, by_labels(samples))
  end)

  it("adds up the counters of owners no longer known, which share one label set", function()
    local registry = new_registry()
    local samples = translation_counters.samples({
      { service_id = 0x80000001, nat_type = C.NAT_TYPE_SERVICE, reason = C.REASON_OK, count = 3 },
      { service_id = 0x80000002, nat_type = C.NAT_TYPE_SERVICE, reason = C.REASON_OK, count = 4 },
    }, registry)

    assert.same({ ["service||ok"] = 7 }, by_labels(samples))
  end)
end)
