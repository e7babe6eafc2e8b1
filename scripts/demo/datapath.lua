-- The datapath demonstration behind scripts/demo.sh (run as root from the
-- repository root): the objects of examples/standalone/ reconciled by the Lua
-- modules (as `balancing-agent plan` does), written into the real eBPF maps,
-- and real clients — curl and dig — run inside a demo cgroup against the
-- virtual addresses, which nothing listens on. Prints the frontends, the
-- clients' answers, `inspect showMapData service` and the translation events
-- as the agent logs them, and removes everything on exit.
--
-- The running agent (watch, reconcile every change, event log) is a later
-- issue; here the entries go once through the applier the agent will use.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local BUILD_DIR = os.getenv("BALANCING_BUILD_DIR") or "build"
package.cpath = BUILD_DIR .. "/lua/?.so;" .. package.cpath

local core = require("balancing.core")
local event = require("balancing.event")
local ffi = require("ffi")
local frontends = require("balancing.frontends")
local log = require("balancing.log")
local plan = require("balancing.plan")

local MANIFESTS = "examples/standalone"
local NODE_NAME = "standalone"
ffi.cdef("int getpid(void);")
local run_id = tostring(ffi.C.getpid())
local bpffs = "/sys/fs/bpf/balancing-demo-" .. run_id
local cgroup_root = assert(core.cgroup2_mount())
local cgroup = cgroup_root .. "/balancing-demo-" .. run_id

local servers = {}
local datapath

local function say(text)
  io.stdout:write(text, "\n")
  io.stdout:flush()
end

local function shell(command)
  local pipe = assert(io.popen(command .. " 2>&1", "r"))
  local output = pipe:read("*a")
  pipe:close()
  return output
end

-- A background process whose pid we keep, so that cleanup ends exactly it.
local function start(command)
  local pid = shell("sh -c '" .. command .. " >/dev/null 2>&1 & echo $!'"):match("(%d+)")
  servers[#servers + 1] = pid
  return pid
end

local function cleanup()
  for _, pid in ipairs(servers) do
    os.execute("kill " .. pid .. " 2>/dev/null")
  end
  if datapath then
    datapath:unpin()
    datapath:close()
  end
  os.execute("rmdir " .. cgroup .. " 2>/dev/null")
end

-- A command run inside the demo cgroup: the shell moves itself there first.
local function inside(command)
  return shell("sh -c 'echo $$ > " .. cgroup .. "/cgroup.procs && exec " .. command .. "'")
end

-- Every owner's entries through the applier (its write order, slots first):
-- how many entries each wrote.
local function write_entries(entries_list)
  local applier = assert(core.applier(datapath))
  for _, entries in ipairs(entries_list) do
    local stats = assert(applier:apply(entries.owner, entries))
    local written = 0
    for _, count in pairs(stats) do
      written = written + (tonumber(count) or 0)
    end
    say(string.format("  %-32s %d map writes", entries.owner, written))
  end
  applier:close()
end

local function main()
  log.set_level("warn")
  say("== plan: examples/standalone for node " .. NODE_NAME)
  local result = assert(plan.compute({ manifests = MANIFESTS, node_name = NODE_NAME }))
  io.stdout:write(frontends.render_table(result.view))

  say("\n== load the eBPF programs (pin dir " .. bpffs .. ") and attach them to " .. cgroup)
  assert(os.execute("mkdir " .. cgroup), "cannot create " .. cgroup)
  datapath = assert(core.load({ bpffs = bpffs, bpf_log_level = "info" }))
  assert(datapath:attach(cgroup))
  say(shell("bpftool cgroup tree " .. cgroup))
  say("== the entries through the applier")
  write_entries(result.entries)
  say("\n== inspect --bpffs " .. bpffs .. " showMapData service")
  io.stdout:write(shell(BUILD_DIR .. "/bin/inspect --bpffs " .. bpffs .. " showMapData service"))

  say("== backends: two HTTP servers on 127.0.0.1:18080 and 127.0.0.2:18080, dnsmasq on 127.0.0.1:15353")
  for _, address in ipairs({ "127.0.0.1", "127.0.0.2" }) do
    start("exec python3 scripts/demo/http_backend.py " .. address .. " 18080")
  end
  start("exec dnsmasq --no-daemon --keep-in-foreground --conf-file=/dev/null --port=15353"
    .. " --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts"
    .. " --address=/demo.balancing.test/192.0.2.10")
  shell("sleep 1")
  local events = datapath:events()
  events:poll(0)

  say("\n== curl http://127.10.0.1/ six times from inside the cgroup (nothing listens on 127.10.0.1)")
  for _ = 1, 6 do
    say("  " .. inside("curl -s --max-time 3 http://127.10.0.1/"):gsub("%s+$", ""))
  end
  say("\n== dig @127.10.0.53 demo.balancing.test (UDP, port 53 -> 15353)")
  say("  " .. inside("dig +short +time=2 +tries=1 @127.10.0.53 demo.balancing.test"):gsub("%s+$", ""))
  say("\n== the same curl from outside the cgroup: not translated")
  say("  " .. shell("curl -s --max-time 2 http://127.10.0.1/ || echo \"(no answer: curl exit $?)\""):gsub("%s+$", ""))

  say("\n== translation events from the ring buffer map_event, as the agent logs them")
  -- the clients have exited: their cgroup, the demo's, is known by its ID
  -- (a cgroup v2 ID is its directory's inode number)
  local demo_cgroup_id = assert(require("lfs").attributes(cgroup, "ino"))
  local formatter = event.new{ store = result.store, node_name = NODE_NAME, cgroup_path = function(id)
    return id == demo_cgroup_id and cgroup:sub(#cgroup_root + 1) or nil
  end }
  local count = 0
  for _ = 1, 5 do
    local list = events:poll(200) or {}
    for _, decoded in ipairs(list) do
      say(formatter:line(decoded))
      count = count + 1
    end
  end
  events:close()
  say(string.format("\n%d events. Cleaning up: servers stopped, programs detached, pins and cgroup removed.", count))
end

local ok, err = xpcall(main, debug.traceback)
cleanup()
if not ok then
  io.stderr:write("demo failed: ", tostring(err), "\n")
  os.exit(1)
end
