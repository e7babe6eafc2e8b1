-- The mounts of this process's mount namespace, from /proc/self/mountinfo:
-- what the specs of the cgroup2 mount (spec/core/cgroup_mount_spec.lua,
-- spec/e2e/agent_start_spec.lua) check, in their namespaced children too.
--
--   local mountinfo = require("helpers.mountinfo")
--   mountinfo.at("/run/balancing/cgroupv2")  --> { root = "/", fstype = "cgroup2" } or nil
local M = {}

-- The topmost mount at path (mount points as the kernel writes them: a
-- space would be \040), or nil.
function M.at(path)
  local found
  for line in io.lines("/proc/self/mountinfo") do
    local root, point, rest = line:match("^%S+ %S+ %S+ (%S+) (%S+) (.*)$")
    if point == path then
      found = { root = root, fstype = rest:match("%- (%S+) ") }
    end
  end
  return found
end

return M
