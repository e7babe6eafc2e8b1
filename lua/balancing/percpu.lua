-- Per-CPU map values: the kernel hands one 8-byte slot per possible CPU for
-- each entry of a per-CPU map; the datapath's counters (map_translations,
-- map_event_drops) are one uint64_t per CPU, read by summing them.
--
--   local total = require("balancing.percpu").sum_u64(value)   -- value: the lookup's bytes
local ffi = require("ffi")

local M = {}

local count_ptr = ffi.typeof("const uint64_t *")
local COUNT_BYTES = 8 -- the kernel hands per-CPU values 8-byte aligned, one per possible CPU

-- sum_u64(value) → the sum of value's per-CPU uint64_t counters (a Lua
-- number: a double holds 2^53 exactly, centuries at a million a second).
function M.sum_u64(value)
  local counts = ffi.cast(count_ptr, value)
  local total = 0
  for cpu = 0, #value / COUNT_BYTES - 1 do
    total = total + tonumber(counts[cpu])
  end
  return total
end

return M
