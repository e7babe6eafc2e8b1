-- scripts/demo.sh, the README's first command, run to the end on this machine
-- (issue 9): the real agent standalone on examples/standalone/, clients through
-- the Service, the LocalRedirectPolicy and the BalancingPolicy, inspect, the
-- events through jq, a manifest edited — in under a minute, exit 0, and nothing
-- left behind: no pins, no cgroup, no process, no scratch directory.
-- BALANCING_DEMO_SKIP_SETUP=1: the build under test (BALANCING_BUILD_DIR) is
-- used as it is, neither setup.sh nor cmake runs.
local agent_run = require("helpers.agent_run")
local core_env = require("helpers.core_env")
local lfs = require("lfs")
local scratch = require("helpers.scratch")

local build_dir = os.getenv("BALANCING_BUILD_DIR") or "build"
local BPFFS = "/sys/fs/bpf"

-- The names under dir that start with prefix, as a set.
local function entries(dir, prefix)
  local found = {}
  if lfs.attributes(dir, "mode") == "directory" then
    for name in lfs.dir(dir) do
      if name:sub(1, #prefix) == prefix then
        found[name] = true
      end
    end
  end
  return found
end

local function now()
  local handle = assert(io.popen("date +%s.%N"))
  local value = tonumber(handle:read("*l"))
  handle:close()
  return value
end

describe("scripts/demo.sh", function()
  after_each(core_env.close_all)

  it("runs to the end in under 60 s: answers through every frontend, events through jq, nothing left behind",
    function()
      if not core_env.open(pending) then
        return
      end
      local cgroup2 = assert(require("balancing.core").cgroup2_mount())
      local pins_before = entries(BPFFS, "balancing-demo-")
      local cgroups_before = entries(cgroup2, "balancing-demo-")

      local started = now()
      -- timeout: a hung demo is ended (SIGTERM: its trap still cleans up), not the whole run
      local status, stdout, stderr = scratch.run("BALANCING_DEMO_SKIP_SETUP=1 BALANCING_BUILD_DIR="
        .. scratch.quote(build_dir) .. " timeout -k 20 120 scripts/demo.sh")
      local seconds = now() - started
      local output = stdout .. stderr

      assert(status == 0, string.format("scripts/demo.sh exited %s after %.1f s:\n%s", tostring(status), seconds,
        output:sub(-3000)))
      assert(seconds < 60, string.format("scripts/demo.sh took %.1f s", seconds))
      assert.matches("demo: done in %d+ s", stdout)

      -- an answer through each frontend, from inside the demo cgroup
      assert.matches("curl http://127%.10%.0%.1/ +hello from backend 127%.0%.0%.[12]:18080", stdout)
      assert.matches("dig @127%.10%.0%.53 %(UDP%) +192%.0%.2%.10", stdout)          -- Service demo/dns
      assert.matches("dig @127%.10%.0%.10 %(UDP%) +192%.0%.2%.53", stdout)          -- LocalRedirectPolicy
      assert.matches("curl http://127%.10%.0%.2/ +hello from backend 127%.0%.0%.[45]:18080", stdout) -- BalancingPolicy
      assert.matches("curl http://127%.10%.0%.2/ +hello from backend 127%.0%.0%.6:18080", stdout) -- after the edit
      -- inspect, and the events pretty-printed by jq, one of each type at least
      assert.matches("showMapData all\n", stdout)
      assert.matches("\nservice +ClusterIP +127%.10%.0%.1 +80 +TCP +demo/web ", stdout) -- owners named
      assert.matches("traceMapData service demo web\nService demo/web %(id %d+%): 1 frontend programmed", stdout)
      assert.matches("LocalRedirectPolicy node%-local%-dns %(id 10%): 2 frontends programmed", stdout)
      assert.matches("BalancingPolicy web%-global %(id 20%): 1 frontend programmed", stdout)
      -- the edit followed: the policy's third backend in the kernel
      assert.matches("127%.0%.0%.4:18080,127%.0%.0%.5:18080,127%.0%.0%.6:18080", stdout)
      for _, nat_type in ipairs({ "service", "localRedirect", "balancing" }) do
        assert.matches('"msg": "formatted ebpf event",.-"natType": "' .. nat_type .. '"', stdout)
      end

      -- nothing left behind: what it names, and nothing new of its kind
      local agent_pid, backends, cgroup, pins = stdout:match(
        "started: agent pid (%d+); backends pids ([%d ]+); cgroup (%S+); pins (%S+)\n")
      assert(agent_pid, "no 'started:' line in the demo's output")
      assert.is_false(agent_run.alive(agent_pid, "balancing-agent"), "the agent " .. agent_pid .. " still runs")
      for pid in backends:gmatch("%d+") do
        assert.is_false(agent_run.alive(pid, "http_backend.py") or agent_run.alive(pid, "dnsmasq"),
          "the backend " .. pid .. " still runs")
      end
      assert.is_nil(lfs.attributes(cgroup), cgroup .. " is left")
      assert.is_nil(lfs.attributes(pins), pins .. " is left")
      for name in pairs(entries(BPFFS, "balancing-demo-")) do
        assert(pins_before[name], BPFFS .. "/" .. name .. " is left")
      end
      for name in pairs(entries(cgroup2, "balancing-demo-")) do
        assert(cgroups_before[name], cgroup2 .. "/" .. name .. " is left")
      end
      local scratch_dir = stdout:match("(/tmp/balancing%-demo%.[%w]+)/manifests")
      assert(scratch_dir, "no scratch directory named in the demo's output")
      assert.is_nil(lfs.attributes(scratch_dir), scratch_dir .. " is left")
    end)
end)
