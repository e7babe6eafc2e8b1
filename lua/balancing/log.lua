-- Structured logging: one JSON object per line, `time`, `level`, `msg` first,
-- then the caller's fields in key order (so that lines diff and grep well).
--
--   log.info("service programmed", { service = "default/web", frontends = 2 })
--   {"time":"2024-05-01T10:00:00.123Z","level":"info","msg":"service programmed","frontends":2,"service":"default/web"}
--
-- Lines below the level (set_level) are dropped before anything is encoded.
-- The sink receives the line without its newline; the default sink writes it
-- to stderr. A sink that returns false refused the line: the log function
-- then returns false too (nothing otherwise).
local cjson = require("cjson")
local ffi = require("ffi")

local M = {}

local LEVELS = { debug = 1, info = 2, warn = 3, error = 4 }

local threshold = LEVELS.info

local function stderr_sink(line)
  io.stderr:write(line, "\n")
end

local sink = stderr_sink

-- Milliseconds need clock_gettime; os.time() has whole seconds only. The
-- declarations are separate so that a struct timespec or clock_gettime
-- declared elsewhere in the VM does not stop the other one.
pcall(ffi.cdef, "struct timespec { long tv_sec; long tv_nsec; };")
pcall(ffi.cdef, "int clock_gettime(int clock_id, struct timespec *tp);")
local CLOCK_REALTIME = 0
local have_clock, timespec = pcall(ffi.new, "struct timespec")

local function now()
  if have_clock and pcall(ffi.C.clock_gettime, CLOCK_REALTIME, timespec) then
    return tonumber(timespec.tv_sec), math.floor(tonumber(timespec.tv_nsec) / 1e6)
  end
  return os.time(), 0
end

-- RFC 3339, UTC, milliseconds: 2024-05-01T10:00:00.123Z. The date and time
-- part is made once per second: a flood of lines (events) asks for the same
-- second again and again.
local last_second, last_text
function M.timestamp(seconds, millis)
  if not seconds then
    seconds, millis = now()
  end
  if seconds ~= last_second then
    last_second, last_text = seconds, os.date("!%Y-%m-%dT%H:%M:%S", seconds)
  end
  return string.format("%s.%03dZ", last_text, millis or 0)
end

-- lua-cjson escapes every "/" as "\/" (valid, but noisy in paths and
-- namespace/name pairs); it escapes backslashes too, so "\/" in its output is
-- always an escaped slash.
local function encode(value)
  return (cjson.encode(value):gsub("\\/", "/"))
end

-- A field value cjson cannot encode (a function, cdata, a sparse array) is
-- logged as its tostring rather than losing the whole line.
local function encode_value(value)
  local ok, text = pcall(encode, value)
  if ok then
    return text
  end
  return encode(tostring(value))
end

local function format(level, msg, fields)
  local parts = {
    '{"time":', encode(M.timestamp()),
    ',"level":', encode(level),
    ',"msg":', encode(tostring(msg)),
  }
  if type(fields) == "table" then
    local keys = {}
    for key in pairs(fields) do
      if key ~= "time" and key ~= "level" and key ~= "msg" then
        keys[#keys + 1] = key
      end
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, key in ipairs(keys) do
      parts[#parts + 1] = "," .. encode(tostring(key)) .. ":" .. encode_value(fields[key])
    end
  end
  parts[#parts + 1] = "}"
  return table.concat(parts)
end

-- → false when the sink refused the line (the agent's stdout, its buffer
-- full behind a stalled reader), else nothing: a caller that must know
-- whether it was said (a drop line) tries again later.
local function emit(level, msg, fields)
  if LEVELS[level] < threshold then
    return
  end
  if sink(format(level, msg, fields)) == false then
    return false
  end
end

function M.debug(msg, fields) return emit("debug", msg, fields) end
function M.info(msg, fields) return emit("info", msg, fields) end
function M.warn(msg, fields) return emit("warn", msg, fields) end
function M.error(msg, fields) return emit("error", msg, fields) end

-- Whether a line of this level would be written (to skip costly field building).
function M.enabled(level)
  return LEVELS[level] ~= nil and LEVELS[level] >= threshold
end

-- set_level("warn") → true, or nil, err for a name that is not a level.
function M.set_level(name)
  local value = LEVELS[name]
  if not value then
    return nil, string.format('log level: unknown level "%s" (debug, info, warn, error)', tostring(name))
  end
  threshold = value
  return true
end

function M.level()
  for name, value in pairs(LEVELS) do
    if value == threshold then
      return name
    end
  end
end

-- set_sink(function(line) ... end); set_sink(nil) restores stderr.
function M.set_sink(fn)
  sink = fn or stderr_sink
end

return M
