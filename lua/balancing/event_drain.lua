-- One loop turn of the event reader, bounded whatever the flood: at most
-- FORMAT_PER_TURN events formatted and written, and when the ring is still
-- more than half full after that (the agent cannot keep up), at most
-- SHED_PER_TURN more taken unread — shed, so that the ring keeps room for
-- what comes next and the log stays close to now. What is lost is counted
-- (balancing_events_dropped_total: stage "ring" for the events the
-- programs found no room for, counted per CPU in map_event_drops; stage
-- "agent" for what this turn shed; stage "output" for the lines the agent's
-- output refused, its buffer full behind a stalled reader: core.output_write)
-- and said in one warn line at most once per interval, with the counts since
-- the line before (a line the output refused is tried again at the next
-- turn: what is said adds up to the counters once the reader is back).
--
--   local drain = event_drain.new{ reader = reader, drops_map = dp:map("map_event_drops"),
--     format = function(decoded) return line end,
--     write = function(text) return refused end, -- (lines the output refused, or nil)
--     written = function(n) end }            -- (optional: the events counter)
--   drain:turn()                             -- the ring's fd is readable, or a tick
--   drain:dropped()                          -- → ring, agent, output (totals, for /metrics)
--   drain:report()                           -- the drop line now, if anything is unsaid
local percpu = require("balancing.percpu")
local log = require("balancing.log")
local drop_report = require("balancing.drop_report")

local M = {}

M.FORMAT_PER_TURN = 1024
-- discarding costs a few tens of nanoseconds an event (nothing decoded):
-- this many is about a millisecond, and empties a 4 MiB ring in two turns
M.SHED_PER_TURN = 32768
-- past this share of the ring in use after a turn, the reader is behind
M.SHED_ABOVE = 0.5
M.LOG_INTERVAL_SECONDS = 10

M.MESSAGE = "events dropped"

local Drain = {}
Drain.__index = Drain

local ZERO_KEY = "\0\0\0\0" -- map_event_drops' one entry

-- The programs' drop counter summed over the CPUs, or nil, err.
local function ring_total(map)
  local value, err = map:lookup(ZERO_KEY)
  if not value then
    return nil, err or "map_event_drops: no entry"
  end
  return percpu.sum_u64(value)
end

-- new{ reader, drops_map, format, write[, written][, clock][, interval] }:
-- drops_map may be nil (an older pin set: the ring's drops are not known).
function M.new(opts)
  local self = setmetatable({
    reader = assert(opts.reader, "event_drain.new: reader is required"),
    drops_map = opts.drops_map,
    format = assert(opts.format, "event_drain.new: format is required"),
    write = assert(opts.write, "event_drain.new: write is required"),
    written = opts.written or function() end,
    shed = 0, refused = 0,
  }, Drain)
  -- the pinned counter outlives an agent: a restarted agent's first line
  -- counts from its own start
  self.ring_at_start = self.drops_map and ring_total(self.drops_map) or 0
  self.ring = self.ring_at_start
  self.drop_line = drop_report.new({ message = M.MESSAGE, clock = opts.clock,
    interval = opts.interval or M.LOG_INTERVAL_SECONDS,
    hint = "the ring was full (ring), the agent could not keep up (agent) or its stdout was not read (output): "
      .. "BALANCING_EVENT_RING_BYTES, or --events failures",
    totals = function()
      self:refresh()
      return { ring = self.ring, agent = self.shed, output = self.refused }
    end })
  return self
end

-- Reads the programs' counter again (a failed read keeps the last value:
-- the log line is about counts, and the next turn tries again).
function Drain:refresh()
  if not self.drops_map then
    return
  end
  local total, err = ring_total(self.drops_map)
  if total then
    self.ring = total
  elseif not self.read_error_said then
    self.read_error_said = true
    log.warn("event drops not read", { map = "map_event_drops", error = tostring(err) })
  end
end

-- ring, agent, output: the events lost so far (ring: as the pinned counter
-- says, from before this agent too, as a Prometheus counter may).
function Drain:dropped()
  self:refresh()
  return self.ring, self.shed, self.refused
end

-- The drop line, when something was lost since the last one and the last
-- one is at least an interval old (balancing.drop_report). → true when a
-- line was written.
function Drain:report(force)
  return self.drop_line:report(force)
end

-- One turn: format and write what is there (bounded), shed beyond it when
-- the ring stays more than half full, and say what was lost when due.
-- → events written, events shed.
function Drain:turn()
  local list, err = self.reader:poll(0, M.FORMAT_PER_TURN)
  if not list then
    log.error("events not read", { error = tostring(err) })
    return 0, 0
  end
  local lines = {}
  for i, decoded in ipairs(list) do
    lines[i] = self.format(decoded)
  end
  if #lines > 0 then
    lines[#lines + 1] = ""
    local refused = self.write(table.concat(lines, "\n"))
    refused = tonumber(refused) or 0
    self.refused = self.refused + refused
    self.written(#list - refused)
  end
  local shed = 0
  local pending, size = self.reader:backlog()
  if pending > size * M.SHED_ABOVE then
    local n, discard_err = self.reader:discard(M.SHED_PER_TURN)
    if n then
      shed = n
      self.shed = self.shed + n
    else
      log.error("events not shed", { error = tostring(discard_err) })
    end
  end
  self:report()
  return #list, shed
end

M.Drain = Drain

return M
