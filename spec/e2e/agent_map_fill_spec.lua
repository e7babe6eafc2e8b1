-- A full map_redirect_loop is said, never silent (issue 8): the real agent
-- counts it at each sync and scrape, logs "map full" once, and /metrics
-- shows balancing_map_entries{map} against balancing_map_max_entries{map}.
-- The pairs are written with bpftool here (the agent has no writer of that
-- map yet); the map is the agent's own pinned one, in the spec's pin dir.
local agent_run = require("helpers.agent_run")
local bpftool_write = require("helpers.bpftool_write")
local core_env = require("helpers.core_env")
local ffi = require("ffi")
local scratch = require("helpers.scratch")
require("balancing.abi") -- the header's structs for ffi

local function loop_pair(cookie)
  local key = ffi.new("struct redirect_loop_key")
  key.netns_cookie = cookie
  key.frontend.address = 0x0100007f
  key.frontend.port = 53
  key.frontend.protocol = 17
  key.frontend.nat_type = ffi.C.NAT_TYPE_LOCAL_REDIRECT
  return key, ffi.new("struct redirect_loop_value", { service_id = 7 })
end

describe("balancing-agent: a full map_redirect_loop", function()
  local dir
  after_each(function()
    agent_run.cleanup()
    if dir then
      scratch.remove_dir(dir)
      dir = nil
    end
    core_env.close_all()
  end)

  it("is reported in the log once and on /metrics as entries reaching max_entries", function()
    local env = core_env.open(pending)
    if not env then
      return
    end
    dir = scratch.temp_dir()
    scratch.write_file(dir .. "/manifests/empty.yaml", "")
    local agent = agent_run.start({ manifests = dir .. "/manifests", cgroup = env:cgroup(), bpffs = env:pin_dir(),
      log = dir .. "/agent.log", env = "BALANCING_MAX_REDIRECT_LOOP=2" })
    local labels = { map = "map_redirect_loop" }
    assert.equals(0, agent_run.metric_value(agent.port, "balancing_map_entries", labels))
    assert.equals(2, agent_run.metric_value(agent.port, "balancing_map_max_entries", labels))
    assert.same({}, agent_run.log_lines(agent.log, "map full"))

    for cookie = 1, 2 do
      bpftool_write.update(agent.bpffs .. "/map_redirect_loop", loop_pair(cookie))
    end

    assert.equals(2, agent_run.metric_value(agent.port, "balancing_map_entries", labels))
    agent_run.metric_value(agent.port, "balancing_map_entries", labels) -- a second scrape: no second line
    local full = agent_run.log_lines(agent.log, "map full")
    assert.equals(1, #full, agent:log_tail())
    assert.equals("map_redirect_loop", full[1].map)
    assert.equals(2, full[1].max_entries)
    assert.is_nil(agent_run.sanitizer_report(agent.log)) -- (an ASan build: BALANCING_SANITIZE=1)
  end)
end)
