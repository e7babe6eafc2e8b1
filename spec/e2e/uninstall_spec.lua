-- `balancing-agent uninstall` (CONTRACTS.md): detach the programs and remove
-- every pin; the datapath stops. Run against a real load and attach in a
-- test cgroup, with a real client before and after.
local core_env = require("helpers.core_env")
local scratch = require("helpers.scratch")

local build_dir = os.getenv("BALANCING_BUILD_DIR") or "build"
local AGENT = build_dir .. "/bin/balancing-agent"
local VIP = "127.10.0.9"

-- Runs the agent; returns status, stdout, stderr. uninstall removes the
-- state file under --run-dir: always a scratch one here (run_dir), never
-- the default /run/balancing, which may be a real agent's.
local run_dir

local function run(args)
  return scratch.run(AGENT .. " " .. table.concat(args, " ") .. " --run-dir " .. scratch.quote(run_dir))
end

-- One connect to VIP:80 from inside the cgroup, with a backend listening on
-- 127.0.0.1:PORT in the same process: "ok", or the errno's name.
local CONNECT_ONCE = [[
import errno, socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[2])))
server.listen(8)
client = socket.socket()
client.settimeout(5)
try:
    client.connect((sys.argv[1], 80))
    print("ok", flush=True)
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)), flush=True)
]]

local function connect_once(cgroup, port)
  local pipe = core_env.spawn_in_cgroup(cgroup, "exec python3 -c " .. core_env.quote(CONNECT_ONCE) .. " " .. VIP
    .. " " .. port)
  local result = pipe:read("*a")
  pipe:close()
  return (result:gsub("%s+$", ""))
end

local function exists(path)
  return os.execute("test -e " .. core_env.quote(path)) == 0
end

describe("balancing-agent uninstall", function()
  before_each(function()
    run_dir = scratch.temp_dir()
  end)

  after_each(function()
    scratch.remove_dir(run_dir)
    core_env.close_all()
  end)

  it("detaches the programs and removes every pin, while an agent still holds them: the datapath stops", function()
    local env = core_env.open(pending)
    local dp, dir = env:load()
    local cgroup = env:cgroup()
    assert.is_true(dp:attach(cgroup))
    local port = core_env.free_port()
    core_env.program_frontend(dp, { address = VIP, port = 80, protocol = "TCP", id = 44, backend_port = port })
    assert.equals("ok", connect_once(cgroup, port)) -- translated to the backend
    scratch.write_file(run_dir .. "/state.json", "{}") -- what the agent leaves for inspect

    local status, stdout, stderr = run({ "uninstall", "--bpffs", dir })

    assert.equals(0, status, stderr)
    assert.matches("detached and unpinned 4 links", stdout, 1, true)
    assert.is_false(exists(dir))
    assert.is_false(exists(run_dir .. "/state.json"))
    assert.matches("removed " .. run_dir .. "/state.json", stdout, 1, true)
    local _, count = core_env.cgroup_programs(cgroup)
    assert.equals(0, count)
    -- the client now reaches the VIP itself, where nothing listens
    assert.equals("ECONNREFUSED", connect_once(cgroup, port))
  end)

  it("says there is nothing to remove when nothing is pinned, and exits 0", function()
    local env = core_env.open(pending)
    local dir = env:pin_dir()
    local status, stdout = run({ "uninstall", "--bpffs", dir })
    assert.equals(0, status)
    assert.matches("nothing to remove", stdout, 1, true)
  end)

  it("leaves what is not balancing's, names the directory, and exits 1", function()
    local env = core_env.open(pending)
    local _, dir = env:load()
    assert.is_true(os.execute("bpftool map create " .. core_env.quote(dir .. "/someone_elses")
      .. " type hash key 4 value 4 entries 4 name someone_elses") == 0)

    local status, _, stderr = run({ "uninstall", "--bpffs", dir })

    assert.equals(1, status)
    assert.matches(dir, stderr, 1, true)
    assert.matches("not balancing's were left", stderr, 1, true)
    assert.same({ "someone_elses" }, core_env.listdir(dir))
  end)

  it("refuses a bad option with one line naming it, exit 2", function()
    local status, stdout, stderr = run({ "uninstall", "--no-such-option" })
    assert.equals(2, status)
    assert.equals("", stdout)
    assert.matches("--no-such-option", stderr, 1, true)
  end)
end)
