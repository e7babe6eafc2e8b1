-- The pods' cgroup directories under the agent's --cgroup hierarchy, by pod
-- UID: where loop avoidance finds the cgroup ID of a backend pod.
--
--   local found = pod_cgroups.scan("/sys/fs/cgroup")
--   found["0f0e…-…"] --> { path = ".../kubepods-besteffort-pod0f0e…_….slice", id = 4711 }
--
-- kubelet's two layouts (as balancing.event reads them from /proc/PID/cgroup):
--   systemd   kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid, _ for ->.slice
--             (a Guaranteed pod: kubepods.slice/kubepods-pod<uid>.slice)
--   cgroupfs  kubepods/<qos>/pod<uid>   (Guaranteed: kubepods/pod<uid>)
-- The pod's own directory is what is wanted, not its containers': the
-- datapath matches a pod cgroup as any ancestor of the client's cgroup, so a
-- container started later is covered by the same entry. The walk does not
-- enter a pod's directory for that reason, and it never stats the cgroup's
-- interface files (cgroup.procs, memory.max, ...): a node has hundreds of
-- cgroups with dozens of those each.
--
-- A cgroup v2 ID (bpf_get_current_ancestor_cgroup_id) is the inode number of
-- its directory, so the ID comes from one stat.
local lfs = require("lfs")

local M = {}

-- Deep enough for kubelet under a nested node (kind: the node's own cgroup,
-- then kubelet.slice/kubelet-kubepods.slice/...), bounded so that a
-- misconfigured --cgroup never walks forever.
M.MAX_DEPTH = 8

-- The interface files of cgroup v2: "<controller>.<name>". A directory name
-- may contain a dot too (kubepods.slice), so only these prefixes are skipped.
local INTERFACE_PREFIXES = { "cgroup", "cpu", "cpuset", "io", "memory", "pids", "rdma", "hugetlb", "misc", "irq" }
local interface_prefix = {}
for _, prefix in ipairs(INTERFACE_PREFIXES) do
  interface_prefix[prefix] = true
end

local function is_interface_file(name)
  local prefix = name:match("^(%a+)%.")
  return prefix ~= nil and interface_prefix[prefix] == true
end

-- The pod UID a directory name is the pod cgroup of, or nil.
function M.pod_uid(name)
  local uid = name:match("^kubepods[%w_-]*%-pod([%x_]+)%.slice$")
  if uid then
    return (uid:gsub("_", "-"))
  end
  return name:match("^pod(%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x)$")
end

local function walk(dir, depth, found)
  local ok, iterator, state = pcall(lfs.dir, dir)
  if not ok then
    return -- gone meanwhile (pods come and go), or not readable
  end
  for name in iterator, state do
    if name ~= "." and name ~= ".." and not is_interface_file(name) then
      local path = dir .. "/" .. name
      local attributes = lfs.symlinkattributes(path)
      if attributes and attributes.mode == "directory" then
        local uid = M.pod_uid(name)
        if uid then
          found[uid] = { path = path, id = attributes.ino }
        elseif depth > 1 then
          walk(path, depth - 1, found)
        end
      end
    end
  end
end

-- scan(root[, max_depth]) → { [pod uid] = { path, id } } of every pod
-- cgroup under root (an unreadable root: none).
function M.scan(root, max_depth)
  local found = {}
  walk(root, max_depth or M.MAX_DEPTH, found)
  return found
end

return M
