-- The log lines the agent's stdout refused (core.output_log: its bounded
-- buffer full behind a stalled reader, core/output.h) said in one warn line
-- at most once per interval, with the count since the line before. The line
-- goes through the same output: while the reader is still stalled it is
-- refused too (and counted), and it is tried again at the next report, so
-- that what was said always adds up to the counter once the reader is back.
-- (Event lines refused are balancing.event_drain's, stage "output".)
--
--   local drops = output_drops.new{ dropped = function() return total end }
--   drops:report()        -- every tick: the line when due
--   drops:report(true)    -- the agent's stop: what is unsaid, interval or not
local drop_report = require("balancing.drop_report")

local M = {}

M.MESSAGE = "log lines dropped"
M.LOG_INTERVAL_SECONDS = 10

-- new{ dropped[, clock][, interval] }: dropped() → the lines refused so far.
-- → a balancing.drop_report (report([force])).
function M.new(opts)
  local dropped = assert(opts.dropped, "output_drops.new: dropped is required")
  return drop_report.new({ message = M.MESSAGE, clock = opts.clock,
    interval = opts.interval or M.LOG_INTERVAL_SECONDS,
    hint = "stdout was not read as fast as the agent wrote: its reader stalled, or BALANCING_OUTPUT_BUFFER_BYTES",
    totals = function() return { lines = dropped() } end })
end

return M
