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
local log = require("balancing.log")
local monotime = require("system").monotime

local M = {}

M.MESSAGE = "log lines dropped"
M.LOG_INTERVAL_SECONDS = 10

local Reporter = {}
Reporter.__index = Reporter

-- new{ dropped[, clock][, interval] }: dropped() → the lines refused so far.
function M.new(opts)
  local self = setmetatable({
    dropped = assert(opts.dropped, "output_drops.new: dropped is required"),
    clock = opts.clock or monotime,
    interval = opts.interval or M.LOG_INTERVAL_SECONDS,
  }, Reporter)
  self.said = { total = self.dropped(), at = self.clock() - self.interval }
  return self
end

-- → true when a line was written (taken by the output).
function Reporter:report(force)
  local now = self.clock()
  if not force and now - self.said.at < self.interval then
    return false
  end
  local total = self.dropped()
  local lines = total - self.said.total
  if lines == 0 then
    return false
  end
  if log.warn(M.MESSAGE, { lines = lines, seconds = math.floor((now - self.said.at) * 10 + 0.5) / 10,
    hint = "stdout was not read as fast as the agent wrote: its reader stalled, or BALANCING_OUTPUT_BUFFER_BYTES" })
    == false then
    return false -- refused as well: still unsaid (and itself counted now)
  end
  self.said = { total = total, at = now }
  return true
end

M.Reporter = Reporter

return M
