-- How the Lua benchmarks (scripts/bench/reconcile, scripts/bench/plan) take
-- and report their figures: the process's CPU time, medians, the machine.
--
--   local timing = require("timing")
--   local started = timing.now()
--   ... timing.median(list), timing.ms(seconds), timing.machine()
local ffi = require("ffi")

local M = {}

pcall(ffi.cdef, "struct timespec { long tv_sec; long tv_nsec; };")
pcall(ffi.cdef, "int clock_gettime(int clock_id, struct timespec *tp);")
-- Process CPU time rather than wall time: the machine may be shared (other
-- builds, other tests), and what is measured is one thread's computation.
local CLOCK_PROCESS_CPUTIME_ID = 2
local timespec = ffi.new("struct timespec")

function M.now()
  ffi.C.clock_gettime(CLOCK_PROCESS_CPUTIME_ID, timespec)
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

function M.median(list)
  local sorted = {}
  for i, v in ipairs(list) do
    sorted[i] = v
  end
  table.sort(sorted)
  local n = #sorted
  if n % 2 == 1 then
    return sorted[(n + 1) / 2]
  end
  return (sorted[n / 2] + sorted[n / 2 + 1]) / 2
end

function M.ms(seconds)
  return string.format("%.1f ms", seconds * 1e3)
end

function M.us(seconds)
  return string.format("%.1f µs", seconds * 1e6)
end

-- "12.3 ms, 11.9 ms, ..." for a list of seconds.
function M.runs_text(list)
  local parts = {}
  for i, t in ipairs(list) do
    parts[i] = M.ms(t)
  end
  return table.concat(parts, ", ")
end

-- "8.1×, 7.9×, ..." for a list of ratios.
function M.ratios_text(list)
  local parts = {}
  for i, ratio in ipairs(list) do
    parts[i] = string.format("%.1f×", ratio)
  end
  return table.concat(parts, ", ")
end

-- "CPU model, N CPUs, Linux release, LuaJIT version" for the report.
function M.machine()
  local cpu = "unknown CPU"
  local file = io.open("/proc/cpuinfo")
  if file then
    for line in file:lines() do
      local model = line:match("^model name%s*:%s*(.+)$")
      if model then
        cpu = model
        break
      end
    end
    file:close()
  end
  local handle = io.popen("nproc 2>/dev/null; uname -r 2>/dev/null")
  local cores = handle:read("*l") or "?"
  local kernel = handle:read("*l") or "?"
  handle:close()
  return string.format("%s, %s CPUs, Linux %s, %s", cpu, cores, kernel, jit.version)
end

-- What fresh memory costs on this machine: milliseconds per MB for the first
-- write to a new allocation of `mb` MB (the page faults) and for a second
-- write to it. In a VM the first can cost tens of times the second, and
-- LuaJIT gives freed memory back to the system, so a benchmark that
-- allocates much pays it again and again.
function M.fresh_memory(mb)
  mb = mb or 64
  pcall(ffi.cdef, "void *malloc(size_t size); void free(void *ptr);")
  pcall(ffi.cdef, "void *memset(void *s, int c, size_t n);")
  local bytes = mb * 1024 * 1024
  local block = ffi.C.malloc(bytes)
  assert(block ~= nil, "timing.fresh_memory: malloc failed")
  local started = M.now()
  ffi.C.memset(block, 1, bytes)
  local first = M.now() - started
  started = M.now()
  ffi.C.memset(block, 2, bytes)
  local second = M.now() - started
  ffi.C.free(block)
  return first * 1e3 / mb, second * 1e3 / mb
end

-- Replace the section of a Markdown file whose heading starts with
-- heading_prefix ("## Reconcile") by section (which starts with its own
-- heading), or append it when there is none. With keep_prefix, a paragraph
-- of the old section that starts with it (a note written by hand, such as
-- the figures before a change) is carried over to the end of the new one.
function M.write_section(path, heading_prefix, section, keep_prefix)
  local file = assert(io.open(path, "r"))
  local text = file:read("*a")
  file:close()
  local escaped = heading_prefix:gsub("%p", "%%%0")
  local start = text:find("\n" .. escaped .. "[^\n]*\n")
  if not start then
    text = text:gsub("\n+$", "") .. "\n\n" .. section
  else
    local after = text:find("\n## ", start + 1)
    local old = text:sub(start, after or #text)
    if keep_prefix then
      local kept = ("\n" .. old .. "\n\n"):match("\n\n(" .. keep_prefix:gsub("%p", "%%%0") .. ".-)\n\n")
      if kept then
        section = section:gsub("\n+$", "") .. "\n\n" .. kept .. "\n"
      end
    end
    text = text:sub(1, start) .. section .. (after and text:sub(after) or "")
  end
  file = assert(io.open(path, "w"))
  file:write(text)
  file:close()
end

return M
