-- Loop avoidance's agent side without a kernel: pod cgroups found by UID in
-- both kubelet layouts (balancing.pod_cgroups, on a plain directory tree as
-- the hierarchy), and the map_redirect_loop pairs of a LocalRedirect owner
-- kept in step as pods' cgroups come (balancing.loop_avoidance).
local abi = require("balancing.abi")
local ffi = require("ffi")
local lfs = require("lfs")
local loop_avoidance = require("balancing.loop_avoidance")
local pod_cgroups = require("balancing.pod_cgroups")
local scratch = require("helpers.scratch")

local SYSTEMD_UID = "3f9a2c10-0000-4000-8000-00000000000a"
local CGROUPFS_UID = "3f9a2c10-0000-4000-8000-00000000000b"
local GUARANTEED_UID = "3f9a2c10-0000-4000-8000-00000000000c"
local CONTAINER = string.rep("ab", 32)

local function mkdir_p(root, relative)
  local path = root
  for part in relative:gmatch("[^/]+") do
    path = path .. "/" .. part
    lfs.mkdir(path)
  end
  return path
end

describe("pod_cgroups", function()
  local root
  before_each(function()
    root = scratch.temp_dir()
  end)
  after_each(function()
    scratch.remove_dir(root)
  end)

  it("reads the pod UID of a pod cgroup's directory name in both layouts, and of nothing else", function()
    assert.equals(SYSTEMD_UID, pod_cgroups.pod_uid("kubepods-burstable-pod" .. SYSTEMD_UID:gsub("-", "_") .. ".slice"))
    assert.equals(SYSTEMD_UID, pod_cgroups.pod_uid("kubepods-pod" .. SYSTEMD_UID:gsub("-", "_") .. ".slice"))
    assert.equals(CGROUPFS_UID, pod_cgroups.pod_uid("pod" .. CGROUPFS_UID))
    assert.is_nil(pod_cgroups.pod_uid("kubepods-burstable.slice"))
    assert.is_nil(pod_cgroups.pod_uid("cri-containerd-" .. CONTAINER .. ".scope"))
    assert.is_nil(pod_cgroups.pod_uid("podcast"))
  end)

  it("finds each pod's own directory under the hierarchy, its inode as the cgroup ID", function()
    local systemd = mkdir_p(root, "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
      .. SYSTEMD_UID:gsub("-", "_") .. ".slice")
    mkdir_p(systemd, "cri-containerd-" .. CONTAINER .. ".scope")
    local cgroupfs = mkdir_p(root, "kubepods/burstable/pod" .. CGROUPFS_UID)
    mkdir_p(cgroupfs, CONTAINER)
    local guaranteed = mkdir_p(root, "kubepods/pod" .. GUARANTEED_UID)
    mkdir_p(root, "system.slice/ssh.service")
    scratch.write_file(root .. "/cgroup.procs", "")

    local found = pod_cgroups.scan(root)

    assert.same({
      [SYSTEMD_UID] = { path = systemd, id = lfs.attributes(systemd, "ino") },
      [CGROUPFS_UID] = { path = cgroupfs, id = lfs.attributes(cgroupfs, "ino") },
      [GUARANTEED_UID] = { path = guaranteed, id = lfs.attributes(guaranteed, "ino") },
    }, found)
  end)

  it("finds nothing under a hierarchy that is not there", function()
    assert.same({}, pod_cgroups.scan(root .. "/missing"))
  end)
end)

describe("loop_avoidance", function()
  local OWNER = "localRedirect/node-local-dns"
  local now, found, scans

  local function new()
    now, found, scans = 100, {}, 0
    return loop_avoidance.new({ cgroup = "/unused", clock = function() return now end,
      scan = function()
        scans = scans + 1
        local copy = {}
        for uid, cgroup in pairs(found) do
          copy[uid] = cgroup
        end
        return copy
      end })
  end

  local function entries(uids)
    local value = ffi.new("struct service_value", { service_id = 20 })
    local pods = {}
    for i, uid in ipairs(uids) do
      pods[i] = { namespace = "kube-system", name = "dns-" .. i, uid = uid }
    end
    return { owner = OWNER, loop_pods = pods, frontends = {
      { key = abi.service_key("10.96.0.10", 53, "UDP", "localRedirect"), value = value, backends = {} },
      { key = abi.service_key("10.96.0.10", 53, "TCP", "localRedirect"), value = value, backends = {} },
    } }
  end

  it("gives a pair per found pod cgroup and frontend, with the policy's ID", function()
    local loops = new()
    found[SYSTEMD_UID] = { path = "/a", id = 4711 }
    local pairs_ = loops:pairs(OWNER, entries({ SYSTEMD_UID, CGROUPFS_UID }))
    assert.equals(2, #pairs_)
    for _, pair in ipairs(pairs_) do
      assert.equals(4711, tonumber(pair.key.cgroup_id))
      assert.equals(20, pair.value.service_id)
    end
    assert.is_nil(loops:pairs("service/kube-system/kube-dns", { owner = "x", frontends = {} }),
      "not a LocalRedirect owner")
  end)

  it("scans again on the tick while a pod has no cgroup, and returns its owner once it has one", function()
    local loops = new()
    assert.same({}, loops:pairs(OWNER, entries({ SYSTEMD_UID })))
    assert.is_nil(loops:rescan_due(), "scanned just now")
    now = now + 1
    assert.is_nil(loops:rescan_due(), "scanned, still nothing")
    found[SYSTEMD_UID] = { path = "/a", id = 4711 }
    now = now + 1
    assert.same({ [OWNER] = true }, loops:rescan_due())
    assert.equals(2, #loops:pairs(OWNER, entries({ SYSTEMD_UID })))
    -- all found: the next scan waits RESCAN_SECONDS
    local before = scans
    now = now + 1
    assert.is_nil(loops:rescan_due())
    assert.equals(before, scans)
    now = now + loop_avoidance.RESCAN_SECONDS
    assert.is_nil(loops:rescan_due(), "scanned, nothing changed")
    assert.equals(before + 1, scans)
  end)

  it("returns the owner when a pod's cgroup is made again, and forgets an owner without pods", function()
    local loops = new()
    found[SYSTEMD_UID] = { path = "/a", id = 4711 }
    loops:pairs(OWNER, entries({ SYSTEMD_UID }))
    found[SYSTEMD_UID] = { path = "/a", id = 4712 }
    now = now + loop_avoidance.RESCAN_SECONDS
    assert.same({ [OWNER] = true }, loops:rescan_due())
    assert.same({}, loops:pairs(OWNER, entries({})))
    now = now + loop_avoidance.RESCAN_SECONDS
    local before = scans
    assert.is_nil(loops:rescan_due())
    assert.equals(before, scans, "no LocalRedirect with pods: nothing scanned")
  end)
end)
