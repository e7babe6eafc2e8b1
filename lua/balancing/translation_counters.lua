-- The datapath's per-owner translation counters (map_translations, a
-- per-CPU LRU hash) read back: each CPU's copy summed, and labelled for
-- balancing_translations_total{type,owner,result} (CONTRACTS.md).
--
--   local counters = translation_counters.read(dp:map("map_translations"))
--   -- { { service_id = 2147483650, nat_type = 0, reason = 1, count = 3 }, ... }
--   local samples = translation_counters.samples(counters, store.ids)
--   -- { { { type = "service", owner = "default/web", result = "no backend" }, 3 }, ... }
--
-- result is "ok" or the failure reason in the words of the event log's
-- `failure` field, so a metric and an event of one failure read alike.
local abi = require("balancing.abi")
local ffi = require("ffi")
local percpu = require("balancing.percpu")

local M = {}

local key_ptr = ffi.typeof("const struct translation_key *")
-- read(map) → the counters, or nil, err when the map cannot be read.
function M.read(map)
  local entries, err = map:dump()
  if not entries then
    return nil, err
  end
  local counters = {}
  for i, entry in ipairs(entries) do
    local key = ffi.cast(key_ptr, entry.key)
    counters[i] = { service_id = tonumber(key.service_id), nat_type = key.nat_type, reason = key.reason,
      count = percpu.sum_u64(entry.value) }
  end
  return counters
end

function M.result_name(reason)
  if reason == ffi.C.REASON_OK then
    return "ok"
  end
  return abi.reason_names[reason] or tostring(reason)
end

-- samples(counters, ids) → metric samples { { labels, value }, ... }; counters
-- whose labels coincide (owners no longer known) are added up, since one
-- label set may appear once on /metrics.
function M.samples(counters, ids)
  local by_labels, samples = {}, {}
  for _, counter in ipairs(counters) do
    local labels = { type = abi.nat_type_names[counter.nat_type] or tostring(counter.nat_type),
      -- "" for an owner deleted since (its counter is evicted once idle)
      owner = ids and ids:owner_name(counter.service_id) or "", result = M.result_name(counter.reason) }
    local text = labels.type .. "\0" .. labels.owner .. "\0" .. labels.result
    local sample = by_labels[text]
    if sample then
      sample[2] = sample[2] + counter.count
    else
      sample = { labels, counter.count }
      by_labels[text] = sample
      samples[#samples + 1] = sample
    end
  end
  return samples
end

return M
