-- Counters of lost lines said in one warn line at most once per interval,
-- with what each counted since the line before. The line goes through the
-- agent's output like any other: when that refuses it (its buffer full
-- behind a stalled reader), it stays unsaid and is tried again at the next
-- report, so that what was said adds up to the counters once the reader is
-- back. balancing.event_drain (events lost) and balancing.output_drops (log
-- lines lost) each keep one.
--
--   local report = drop_report.new{ message = "events dropped", hint = "...",
--     totals = function() return { ring = r, agent = a } end }  -- counters so far
--   report:report()        -- the line when due (true when it was written)
--   report:report(true)    -- the line now, interval or not (the agent's stop)
local log = require("balancing.log")
local monotime = require("system").monotime

local M = {}

local Report = {}
Report.__index = Report

-- new{ message, hint, totals, interval[, clock] }
function M.new(opts)
  local self = setmetatable({
    message = assert(opts.message, "drop_report.new: message is required"),
    hint = opts.hint,
    totals = assert(opts.totals, "drop_report.new: totals is required"),
    interval = assert(opts.interval, "drop_report.new: interval is required"),
    clock = opts.clock or monotime,
  }, Report)
  self.said = { totals = self.totals(), at = self.clock() - self.interval }
  return self
end

function Report:report(force)
  local now = self.clock()
  if not force and now - self.said.at < self.interval then
    return false
  end
  local totals = self.totals()
  local fields, lost = {}, false
  for name, total in pairs(totals) do
    fields[name] = total - (self.said.totals[name] or 0)
    lost = lost or fields[name] ~= 0
  end
  if not lost then
    return false
  end
  fields.seconds = math.floor((now - self.said.at) * 10 + 0.5) / 10
  fields.hint = self.hint
  if log.warn(self.message, fields) == false then
    return false -- refused as well: still unsaid
  end
  self.said = { totals = totals, at = now }
  return true
end

return M
