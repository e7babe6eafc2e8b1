-- The kernel's trace buffer as `bpftool prog tracelog` shows it, read without
-- taking anything from anyone (spec/e2e/tracelog_spec.lua).
--
--   local tracefs = require("helpers.tracefs")
--   local off = tracefs.unavailable_reason()      -- nil, or why the buffer cannot be read
--   local lines = tracefs.printk_lines({ [pid] = true })
--   --> { { pid = 1234, comm = "python3", message = "balancing: ..." }, ... }
--
-- Shared-machine rules: only the non-consuming `trace` file is read, never
-- `trace_pipe` (that would take lines other users are waiting for); the
-- buffer is never cleared and no tracing setting is changed. When tracefs is
-- not mounted, it is mounted only inside a private mount namespace of the
-- reading process (`unshare -m`), so the host's mounts never change and
-- nothing is left to unmount, whatever happens to the spec.
local scratch = require("helpers.scratch")

local M = {}

-- The tracefs mount point in /proc/mounts (/sys/kernel/tracing, or
-- /sys/kernel/debug/tracing under debugfs), or nil.
function M.mount_point()
  local found
  for line in io.lines("/proc/mounts") do
    local path, kind = line:match("^%S+ (%S+) (%S+) ")
    if kind == "tracefs" then
      -- the canonical place first
      if path == "/sys/kernel/tracing" then
        return path
      end
      found = found or path
    end
  end
  return found
end

-- A shell command that runs `command FILE` on tracefs file `name` (its exit
-- status that of the command): on the mount, or else inside a private mount
-- namespace where tracefs is mounted for the command alone.
local function reader(name, command)
  local point = M.mount_point()
  if point then
    return command .. " " .. scratch.quote(point .. "/" .. name)
  end
  local script = string.format("mount -t tracefs nodev /sys/kernel/tracing && exec %s %s", command,
    scratch.quote("/sys/kernel/tracing/" .. name))
  return "unshare -m --propagation private sh -c " .. scratch.quote(script)
end

-- The content of tracefs file name (e.g. "tracing_on"), or nil and why.
function M.read(name)
  local status, stdout, stderr = scratch.run(reader(name, "cat"))
  if status ~= 0 then
    return nil, string.format("reading %s of tracefs: exit %s %s", name, tostring(status), stderr)
  end
  return stdout
end

-- nil when the trace buffer records bpf_printk lines and can be read here,
-- else why not (not root, tracefs unreadable, tracing_on 0).
function M.unavailable_reason()
  local on, err = M.read("tracing_on")
  if not on then
    return "the kernel's trace buffer cannot be read: " .. err
  end
  if on:match("^%s*0") then
    return "the kernel's trace buffer is disabled (tracing_on is 0 in tracefs): bpf_printk lines are not recorded; "
      .. "`echo 1 > /sys/kernel/tracing/tracing_on` turns it on"
  end
  return nil
end

-- The bpf_printk lines of the trace buffer written by the processes in pids
-- (a set: pid → true), oldest first: { pid, comm, message } where message is
-- what the program printed (what `bpftool prog tracelog` shows after the
-- "bpf_trace_printk: " of the line).
function M.printk_lines(pids)
  -- grep: 0 lines found, 1 none, 2 trouble
  local status, stdout, stderr = scratch.run(reader("trace", "grep -a -e 'bpf_trace_printk: '"))
  assert(status == 0 or status == 1, "reading the trace buffer: exit " .. tostring(status) .. " " .. stderr)
  local found = {}
  for line in stdout:gmatch("[^\n]+") do
    -- "  python3-1234    [001] ...11  123.456: bpf_trace_printk: balancing: ..."
    local comm, pid, message = line:match("^%s*(.-)%-(%d+)%s.-bpf_trace_printk: (.*)$")
    pid = tonumber(pid)
    if pid and pids[pid] then
      found[#found + 1] = { pid = pid, comm = comm, message = message }
    end
  end
  return found
end

-- The CPU this process may run on first (from Cpus_allowed_list), to pin
-- clients to one CPU: their lines then land in one per-CPU buffer, in order.
function M.first_allowed_cpu()
  for line in io.lines("/proc/self/status") do
    local list = line:match("^Cpus_allowed_list:%s*(%S+)")
    if list then
      return tonumber(list:match("^(%d+)"))
    end
  end
  return 0
end

return M
