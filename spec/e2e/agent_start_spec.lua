-- balancing-agent at start, before it loads anything (issue 7): the kernel
-- feature check (CONTRACTS.md: what is missing is named, exit status 1) and
-- cgroup2 mounted at --cgroup when nothing is mounted there.
--
-- Safety (CONTRACTS.md, "Test safety"): the agent that mounts runs in a
-- child first moved into a test cgroup of ours and then into new cgroup and
-- mount namespaces, so the cgroup2 it mounts shows that test cgroup as its
-- root and the programs attach there; the mount vanishes with the agent's
-- mount namespace. Pins only under our own directory (core_env).
local agent_run = require("helpers.agent_run")
local cjson = require("cjson")
local core_env = require("helpers.core_env")
local lfs = require("lfs")
local mountinfo = require("helpers.mountinfo")
local scratch = require("helpers.scratch")

local AGENT = agent_run.AGENT
local ATTACHED = {
  cgroup_inet4_connect = "balancing_connect4",
  cgroup_udp4_sendmsg = "balancing_sendmsg4",
  cgroup_udp4_recvmsg = "balancing_recvmsg4",
  cgroup_inet4_getpeername = "balancing_getpeername4",
}

-- The agent's stdout as decoded JSON lines (a line that is not JSON fails).
local function json_lines(stdout)
  local lines = {}
  for line in stdout:gmatch("[^\n]+") do
    local ok, doc = pcall(cjson.decode, line)
    assert(ok and type(doc) == "table", "not a JSON log line: " .. line)
    lines[#lines + 1] = doc
  end
  return lines
end

-- Runs the agent to its exit (at most 20 s): status, log lines, stderr.
local function run_agent(env_prefix, opts)
  local status, stdout, stderr = scratch.run(string.format(
    "timeout 20 env %s %s --manifests %s --cgroup %s --bpffs %s --listen 127.0.0.1:%d --node-name node-1 "
    .. "--run-dir %s", env_prefix, AGENT, scratch.quote(opts.manifests), scratch.quote(opts.cgroup),
    scratch.quote(opts.bpffs), core_env.free_port(), scratch.quote(agent_run.run_dir_of(opts.manifests))))
  return status, json_lines(stdout), stderr
end

-- (under BALANCING_SANITIZE=1 the agent is an ASan/UBSan build: nothing reported)
local function assert_no_sanitizer_report(text)
  assert.is_nil(text:find("Sanitizer", 1, true), text)
  assert.is_nil(text:find("runtime error:", 1, true), text)
end

describe("balancing-agent at start", function()
  local dir
  after_each(function()
    agent_run.teardown(dir)
    dir = nil
  end)

  local function setup()
    local env = core_env.open(pending)
    if not env then
      return nil
    end
    dir = scratch.temp_dir()
    assert(lfs.mkdir(dir .. "/manifests"))
    return { env = env, manifests = dir .. "/manifests", cgroup = env:cgroup(), bpffs = env:pin_dir() }
  end

  it("names a missing kernel feature in one log line and exits 1, having pinned nothing", function()
    local s = setup()
    if not s then
      return
    end
    local status, lines, stderr = run_agent("BALANCING_FEATURES_PRETEND_MISSING=ring_buffer", s)
    assert.equals(1, status, stderr)
    assert.equals(1, #lines)
    assert.equals("error", lines[1].level)
    assert.equals("agent cannot start", lines[1].msg)
    assert.equals("ring buffer", lines[1].missing)
    assert_no_sanitizer_report(stderr)
    assert.is_nil(lfs.attributes(s.bpffs, "mode"))
    local _, count = core_env.cgroup_programs(s.cgroup)
    assert.equals(0, count)
  end)

  it("refuses a --cgroup that is a non-empty directory, naming it, exit 1, having pinned nothing", function()
    local s = setup()
    if not s then
      return
    end
    s.cgroup = dir .. "/not-a-cgroup"
    scratch.write_file(s.cgroup .. "/file", "x")
    local status, lines, stderr = run_agent("", s)
    assert.equals(1, status, stderr)
    assert.equals(1, #lines)
    assert.equals("agent cannot start", lines[1].msg)
    assert.equals(s.cgroup, lines[1].cgroup)
    assert.matches(s.cgroup .. ": not a cgroup v2 directory, and not empty", lines[1].error, 1, true)
    assert_no_sanitizer_report(stderr)
    assert.is_nil(lfs.attributes(s.bpffs, "mode"))
  end)

  it("mounts cgroup2 at an empty --cgroup directory and attaches the four programs there", function()
    local s = setup()
    if not s then
      return
    end
    local mount_point, log = dir .. "/cgroupv2", dir .. "/agent.log"
    assert(lfs.mkdir(mount_point))
    local port = core_env.free_port()
    -- into the test cgroup, then new cgroup and mount namespaces: the mount's
    -- root is the test cgroup; unshare execs the agent (the same pid)
    local script = 'echo $$ > "$1/cgroup.procs" || exit 1; shift; '
      .. 'exec unshare --mount --cgroup --propagation private "$@"'
    local launch = assert(io.popen(string.format("env -u LD_PRELOAD sh -c %s sh %s %s --manifests %s --cgroup %s "
      .. "--bpffs %s --listen 127.0.0.1:%d --node-name node-1 --run-dir %s >>%s 2>&1 & echo $!", scratch.quote(script),
      scratch.quote(s.cgroup), AGENT, scratch.quote(s.manifests), scratch.quote(mount_point), scratch.quote(s.bpffs),
      port, scratch.quote(agent_run.run_dir_of(log)), scratch.quote(log))))
    local pid = tonumber(launch:read("*l"))
    launch:close()
    assert(pid, "the agent did not start")
    agent_run.track(pid, "balancing-agent")
    local ready = agent_run.eventually(20, function()
      return agent_run.http_get(port, "/readyz") == 200 or not agent_run.alive(pid, "balancing-agent")
    end)
    assert(ready and agent_run.alive(pid, "balancing-agent"), "the agent was not ready within 20 s:\n"
      .. (io.open(log):read("*a")))

    local mounted = agent_run.log_lines(log, "mounted cgroup2")
    assert.equals(1, #mounted)
    assert.equals(mount_point, mounted[1].path)
    assert.same(ATTACHED, (core_env.cgroup_programs(s.cgroup)))
    assert.is_nil(mountinfo.at(mount_point), "the mount is the agent's mount namespace's alone")

    assert(agent_run.stop_process(pid, "balancing-agent", "TERM", 10), "the agent still runs 10 s after SIGTERM")
    local _, still = core_env.cgroup_programs(s.cgroup)
    assert.equals(4, still, "SIGTERM leaves the datapath attached")
    local status, out, err = agent_run.uninstall(s.bpffs, s.cgroup, agent_run.run_dir_of(log))
    assert.equals(0, status, out .. err)
    local _, left = core_env.cgroup_programs(s.cgroup)
    assert.equals(0, left)
    assert_no_sanitizer_report(io.open(log):read("*a"))
  end)
end)
