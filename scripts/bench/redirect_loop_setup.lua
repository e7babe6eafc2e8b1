-- Helper of scripts/bench/redirect_loop: one datapath, programmed as the
-- agent programs a node-local DNS LocalRedirectPolicy, held until EOF.
--
--   luajit redirect_loop_setup.lua hold BPFFS CGROUP POD_CGROUP_ID LR_PORT SVC_PORT EVENTS DECOYS
--
-- Loads Balancing's programs with balancing.core (whichever build LUA_CPATH
-- names) into the pin dir BPFFS, writes through the applier (core.applier,
-- as the agent writes):
--
--   owner bench/svc   127.10.0.1:80/TCP Service       -> 127.0.0.3:SVC_PORT
--                     127.10.0.2:80/TCP Service       -> 127.0.0.3:SVC_PORT
--   owner bench/lr    127.10.0.1:80/TCP LocalRedirect -> 127.0.0.2:LR_PORT
--                     map_redirect_loop: (POD_CGROUP_ID, that frontend), the
--                     "backend pod", and DECOYS pairs of cgroup IDs that are
--                     no cgroup (other nodes' pods, so to speak)
--
-- so 127.10.0.1 is the cluster DNS Service with a LocalRedirect on it (the
-- node-local DNS layout) and 127.10.0.2 a plain Service. A client outside
-- POD_CGROUP_ID's subtree dialing 127.10.0.1 walks every level of its cgroup
-- and misses at each (the worst case for an ordinary client) before it is
-- redirected; one inside it is the policy's own backend and reaches the
-- Service. EVENTS is "all" or "off" (map_configure.events). Attaches to
-- CGROUP, prints "ready connect4=<program ID>", waits for EOF on stdin, then
-- detaches and unpins everything (also when anything above failed).

local ffi = require("ffi")

local VIP_REDIRECTED = "127.10.0.1"
local VIP_SERVICE = "127.10.0.2"
local VIP_PORT = 80
local LR_BACKEND = "127.0.0.2"
local SVC_BACKEND = "127.0.0.3"
-- far above any inode number the cgroup2 filesystem hands out
local DECOY_BASE = 0x7000000000000000ULL

local function fail(...)
  io.stderr:write("redirect_loop_setup: ", ...)
  io.stderr:write("\n")
  os.exit(1)
end

local function service_value(abi, id, nat_type, mode)
  local value = ffi.new("struct service_value")
  value.service_id = id
  value.total_count = 1
  value.local_count = 1
  value.nat_mode = abi.nat_modes[nat_type][mode]
  return value
end

local function hold(bpffs, cgroup, pod_cgroup_id, lr_port, svc_port, events, decoys)
  local core = require("balancing.core")
  local abi = require("balancing.abi")

  local dp, err = core.load{ bpffs = bpffs, bpf_log_level = "off", events = events }
  if not dp then
    fail("core.load: ", tostring(err))
  end

  local prog_id
  local ok, failure = pcall(function()
    local applier = assert(core.applier(dp))
    local svc_backend = { abi.backend_value(SVC_BACKEND, svc_port, true) }
    assert(applier:apply("bench/svc", { owner = "bench/svc", frontends = {
      { key = abi.service_key(VIP_REDIRECTED, VIP_PORT, "TCP", "service"),
        value = service_value(abi, 1, "service", "ClusterIP"), backends = svc_backend },
      { key = abi.service_key(VIP_SERVICE, VIP_PORT, "TCP", "service"),
        value = service_value(abi, 2, "service", "ClusterIP"), backends = svc_backend } } }))

    local lr_key = abi.service_key(VIP_REDIRECTED, VIP_PORT, "TCP", "localRedirect")
    local loops = {}
    local function pair(cgroup_id)
      local key = ffi.new("struct redirect_loop_key")
      key.cgroup_id = cgroup_id
      key.frontend = lr_key
      loops[#loops + 1] = { key = key, value = ffi.new("struct redirect_loop_value", { service_id = 3 }) }
    end
    pair(ffi.new("uint64_t", pod_cgroup_id))
    for i = 1, decoys do
      pair(DECOY_BASE + i)
    end
    assert(applier:apply("bench/lr", { owner = "bench/lr", redirect_loops = loops, frontends = {
      { key = lr_key, value = service_value(abi, 3, "localRedirect", "service"),
        backends = { abi.backend_value(LR_BACKEND, lr_port, true) } } } }))
    applier:close()

    assert(dp:attach(cgroup))
    local links = assert(dp:links())
    prog_id = assert(links.connect4 and links.connect4.prog_id, "no connect4 link after the attach")
  end)

  if ok then
    io.stdout:write(string.format("ready connect4=%d\n", prog_id))
    io.stdout:flush()
    io.stdin:read("*a") -- until the benchmark closes our stdin (or dies)
  else
    io.stderr:write("redirect_loop_setup: ", tostring(failure), "\n")
  end
  local unpinned, uerr = dp:unpin()
  if not unpinned then
    fail("unpin ", bpffs, ": ", tostring(uerr))
  end
  os.exit(ok and 0 or 1)
end

if arg[1] == "hold" and #arg == 8 and tonumber(arg[4]) and tonumber(arg[5]) and tonumber(arg[6])
  and (arg[7] == "all" or arg[7] == "off") and tonumber(arg[8]) then
  -- the ID as a 64-bit integer, not through a double
  local id = ffi.new("uint64_t", 0)
  for digit in arg[4]:gmatch("%d") do
    id = id * 10 + tonumber(digit)
  end
  hold(arg[2], arg[3], id, tonumber(arg[5]), tonumber(arg[6]), arg[7], tonumber(arg[8]))
else
  io.stderr:write("usage: redirect_loop_setup.lua hold BPFFS CGROUP POD_CGROUP_ID LR_PORT SVC_PORT all|off DECOYS\n")
  os.exit(2)
end
