-- The harness of the kernel datapath specs (spec/core/datapath_*_spec.lua):
-- the real programs, loaded by `balancing.core`, attached to a cgroup of our
-- own, and real clients (python3, dig) run inside or outside that cgroup
-- against real loopback servers.
--
--   local kernel = require("helpers.kernel")
--   describe("...", function()
--     after_each(kernel.close_all)           -- teardown, failure included
--     it("...", function()
--       local env = kernel.open(pending)      -- pending (or error) when no root/BPF
--       local backends = env:tcp_servers({ "127.0.0.1", "127.0.0.2" })
--       env:frontend{ address = "127.10.0.1", port = 80, backends = backends }
--       local run = env:client_inside("tcp", "127.10.0.1", 80, 10)
--
-- Test safety (shared machine, see CONTRACTS.md): an environment attaches only
-- to a cgroup it creates (balancing-kspec-<pid>-<n> under the cgroup2 mount),
-- pins only under /sys/fs/bpf/balancing-kspec-<pid>-<n>, listens and connects
-- only on 127.0.0.0/8 (its own or that of a network namespace it created),
-- and its close() kills the servers it started (by pid), deletes its network
-- namespaces, unpins, and removes the cgroup. It never moves any process but its own
-- clients, and never kills a process it did not start.
local abi = require("balancing.abi")
local bpftool_write = require("helpers.bpftool_write")
local cjson = require("cjson")
local ffi = require("ffi")
local lfs = require("lfs")
local system = require("system")

local M = {}

local BPFFS_ROOT = "/sys/fs/bpf"
local BTF_PATH = "/sys/kernel/btf/vmlinux"
local NAME_PREFIX = "balancing-kspec-"
local CLIENT_TIMEOUT_SECONDS = 30
-- A server lives for one spec; the bound only matters if a teardown never
-- came (it also bounds the wait for a server that never says it is ready).
local SERVER_LIFETIME_SECONDS = 120

-- Paths ----------------------------------------------------------------------

local function this_dir()
  local source = debug.getinfo(1, "S").source
  return (source:sub(1, 1) == "@" and source:sub(2) or source):match("^(.*)/[^/]*$") or "."
end

local FIXTURES = this_dir() .. "/../fixtures/kernel"

local function exists(path)
  return lfs.attributes(path, "mode") ~= nil
end

local function quote(word)
  return "'" .. tostring(word):gsub("'", "'\\''") .. "'"
end

-- Every process the harness starts (servers, clients, dnsmasq, dig,
-- bpftool) runs without the sanitizer runtime that scripts/test.sh preloads
-- into LuaJIT for BALANCING_SANITIZE=1: preloaded into them, ASan reports
-- their own leaks as failures, and dnsmasq hangs at start.
local SANITIZER_FREE = "unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; "

local function popen(command)
  return assert(io.popen(SANITIZER_FREE .. command, "r"))
end

local function read_command(command)
  local pipe = popen(command)
  local output = pipe:read("*a")
  local ok, _, status = pipe:close()
  return output, ok, status
end

local function own_pid()
  local file = assert(io.open("/proc/self/stat", "r"))
  local pid = tonumber(file:read("*l"):match("^(%d+)"))
  file:close()
  return pid
end

-- The interpreter itself rather than a `python3` shim on PATH (pyenv's costs
-- ~80 ms per start); -I -S: no user site, no site module, faster still.
local python_cache
local function python()
  if not python_cache then
    local path = read_command("python3 -c 'import sys; print(sys.executable)' 2>/dev/null"):match("^(%S+)")
    python_cache = (path or "python3") .. " -I -S"
  end
  return python_cache
end

function M.sleep(seconds)
  system.sleep(seconds)
end

function M.now()
  return system.monotime()
end

-- Availability -----------------------------------------------------------------

local function find_mount(fstype, wanted_path)
  local file = io.open("/proc/mounts", "r")
  if not file then
    return nil
  end
  local found
  for line in file:lines() do
    local path, kind = line:match("^%S+ (%S+) (%S+) ")
    if kind == fstype and (wanted_path == nil or path == wanted_path) then
      found = found or path
    end
  end
  file:close()
  return found
end

-- The cgroup2 mount: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified
-- on a hybrid one; read it, never assume it.
function M.cgroup2_mount()
  return find_mount("cgroup2")
end

local function is_root()
  local output = read_command("id -u 2>/dev/null")
  return output:match("^0%s*$") ~= nil
end

local function ensure_bpffs()
  if find_mount("bpf", BPFFS_ROOT) then
    return true
  end
  local _, ok = read_command("mount -t bpf bpf " .. BPFFS_ROOT .. " 2>&1")
  return ok and find_mount("bpf", BPFFS_ROOT) ~= nil
end

-- nil when the kernel specs can run here, else why not.
function M.unavailable_reason()
  if not is_root() then
    return "not running as root"
  end
  if not exists(BTF_PATH) then
    return "no kernel BTF at " .. BTF_PATH
  end
  if not M.cgroup2_mount() then
    return "no cgroup2 mount in /proc/mounts"
  end
  if not ensure_bpffs() then
    return "bpffs is not mounted at " .. BPFFS_ROOT .. " and cannot be mounted"
  end
  return nil
end

-- The core module is part of the build: a missing one is a failure, not a
-- reason to skip.
local function core()
  local ok, module = pcall(require, "balancing.core")
  if not ok then
    error("balancing.core does not load (is the build directory right? BALANCING_BUILD_DIR="
      .. tostring(os.getenv("BALANCING_BUILD_DIR")) .. "): " .. tostring(module), 3)
  end
  return module
end

M.core = core

-- Values ---------------------------------------------------------------------------

-- "127.0.0.2:41234" -> "127.0.0.2", 41234
function M.split_endpoint(endpoint)
  local address, port = endpoint:match("^([%d%.]+):(%d+)$")
  assert(address, "not an address:port: " .. tostring(endpoint))
  return address, tonumber(port)
end

-- A u64 (number, cdata or decimal string) as decimal text, to compare cookies
-- whatever type the binding returns.
function M.u64_text(value)
  if type(value) == "string" then
    return value
  end
  return (tostring(ffi.new("uint64_t", value)):gsub("ULL$", ""))
end

local function service_value(frontend, count)
  local value = ffi.new("struct service_value")
  value.service_id = frontend.id or 1
  value.total_count = count
  value.local_count = frontend.local_count or 0
  value.affinity_seconds = frontend.affinity_seconds or 0
  local nat_type = frontend.type or "service"
  value.nat_mode = abi.nat_modes[nat_type][frontend.mode or "ClusterIP"]
    or error("unknown mode " .. tostring(frontend.mode) .. " for type " .. nat_type)
  value.flags = frontend.local_only and ffi.C.SERVICE_FLAG_LOCAL_ONLY or 0
  return value
end

local function backend_key(key, slot)
  local value = ffi.new("struct backend_key")
  value.frontend = key
  value.slot = slot
  return value
end

M.backend_key = backend_key

-- The environment -------------------------------------------------------------------

local Env = {}
Env.__index = Env

local open_envs = {}
local env_counter = 0

local function check(result, err, what)
  if result == nil then
    error(what .. ": " .. tostring(err), 3)
  end
  return result
end

-- balancing-kspec-<pid>-<n> with neither a cgroup nor a pin directory of
-- that name (busted reloads this module for every spec file, so the counter
-- starts again; a name a failed teardown left behind is never reused).
local function unused_name()
  local cgroup2 = M.cgroup2_mount()
  repeat
    env_counter = env_counter + 1
    local name = string.format("%s%d-%d", NAME_PREFIX, own_pid(), env_counter)
    if not exists(cgroup2 .. "/" .. name) and not exists(BPFFS_ROOT .. "/" .. name) then
      return name
    end
  until false
end

-- A fresh datapath: its own cgroup, its own pin directory, the programs
-- loaded and attached. `pending` is busted's, called when the kernel specs
-- cannot run here (BALANCING_REQUIRE_E2E=1 turns that into an error).
-- open(pending[, load_options]): load_options go to core.load (map sizes).
function M.open(pending, load_options)
  local reason = M.unavailable_reason()
  if reason then
    if os.getenv("BALANCING_REQUIRE_E2E") == "1" then
      error("BALANCING_REQUIRE_E2E=1 and the kernel specs cannot run: " .. reason, 2)
    end
    pending("needs root and BPF: " .. reason)
    return nil
  end
  local balancing_core = core()

  local name = unused_name()
  local env = setmetatable({
    name = name,
    cgroup = M.cgroup2_mount() .. "/" .. name,
    bpffs = BPFFS_ROOT .. "/" .. name,
    servers = {},
    frontends = {},
  }, Env)
  -- Registered before anything exists, so that close_all undoes a half-built one.
  open_envs[#open_envs + 1] = env

  check(lfs.mkdir(env.cgroup), "mkdir failed", "creating cgroup " .. env.cgroup)
  env.cgroup_created = true
  local options = { bpffs = env.bpffs }
  for key, value in pairs(load_options or {}) do
    options[key] = value
  end
  local dp, err = balancing_core.load(options)
  env.dp = check(dp, err, "core.load{bpffs = " .. env.bpffs .. "}")
  env.loaded = true
  return env:attach()
end

function Env:attach()
  local ok, err = self.dp:attach(self.cgroup)
  check(ok, err, "attaching to " .. self.cgroup)
  return self
end

-- The product calls the detach spec exercises. An unpin is remembered, so
-- that close() does not unpin twice; after a detach, close() still unpins.
function Env:detach()
  return self.dp:detach()
end

function Env:unpin()
  local ok, err = self.dp:unpin()
  self.unpinned = true
  return ok, err
end

-- bpftool's view of the programs attached to our cgroup (empty when none).
function Env:attached_programs()
  return (read_command("bpftool cgroup show " .. quote(self.cgroup) .. " 2>&1"))
end

function Env:map(name)
  return check(self.dp:map(name), "no such map", "dp:map(" .. name .. ")")
end

-- The TCP reverse records: the filled slots of map_nat_record_tcp, as
-- `inspect showMapData natRecord` shows them (socketCookie, backend,
-- backendPort, dialed, id, ...).
function Env:tcp_nat_records()
  local rows = require("balancing.inspect.maps").rows({ map_nat_record_tcp = self:map("map_nat_record_tcp") },
    "map_nat_record_tcp")
  return check(rows, "no rows", "reading map_nat_record_tcp")
end

-- The cgroup id the programs see (bpf_get_current_cgroup_id): on cgroup2, the
-- inode number of the cgroup directory.
function Env:cgroup_id()
  return lfs.attributes(self.cgroup, "ino")
end

-- Network namespaces ---------------------------------------------------------------------

-- A network namespace of this environment's own, <name>-<label>, with its
-- loopback up (127.0.0.0/8 answers inside it); close() deletes it after the
-- servers in it are gone. Returns its name, for `ip netns exec`.
function Env:netns(label)
  local name = self.name .. "-" .. label
  self.netns_names = self.netns_names or {}
  self.netns_names[#self.netns_names + 1] = name
  -- (the status is echoed: LuaJIT's pipe:close() does not give it)
  local output = read_command("ip netns add " .. quote(name) .. " 2>&1 && ip -n " .. quote(name)
    .. " link set lo up 2>&1 && echo netns-ready")
  if not output:match("netns%-ready%s*$") then
    error("creating network namespace " .. name .. ": " .. output, 2)
  end
  return name
end

-- Servers --------------------------------------------------------------------------------

local function start_server_process(self, command)
  local pipe = popen(command)
  local line = pipe:read("*l")
  if not line then
    pipe:close()
    error("server did not start: " .. command, 3)
  end
  local info = cjson.decode(line)
  self.servers[#self.servers + 1] = { pid = info.pid, pipe = pipe }
  return info
end

-- One TCP listener per address, each on a free port, answering with its own
-- "address:port". Returns those identities, in the order given.
function Env:tcp_servers(addresses)
  return start_server_process(self, string.format("exec timeout %d %s %s tcp %s", SERVER_LIFETIME_SECONDS, python(),
    quote(FIXTURES .. "/servers.py"), table.concat(addresses, " "))).backends
end

-- The same TCP listeners inside a network namespace of this environment
-- (Env:netns): endpoints "address:port" (e.g. what tcp_servers returned), so
-- that one frontend's backends answer in every namespace alike.
function Env:tcp_servers_in_netns(netns, endpoints)
  return start_server_process(self, string.format("exec ip netns exec %s timeout %d %s %s tcp %s", quote(netns),
    SERVER_LIFETIME_SECONDS, python(), quote(FIXTURES .. "/servers.py"), table.concat(endpoints, " "))).backends
end

-- The same UDP listeners inside a network namespace of this environment.
function Env:udp_servers_in_netns(netns, endpoints)
  return start_server_process(self, string.format("exec ip netns exec %s timeout %d %s %s udp %s", quote(netns),
    SERVER_LIFETIME_SECONDS, python(), quote(FIXTURES .. "/servers.py"), table.concat(endpoints, " "))).backends
end

function Env:udp_servers(addresses)
  return start_server_process(self, string.format("exec timeout %d %s %s udp %s", SERVER_LIFETIME_SECONDS, python(),
    quote(FIXTURES .. "/servers.py"), table.concat(addresses, " "))).backends
end

-- dnsmasq answering example.test with 1.2.3.4 on address:<free port>, in the
-- foreground; returns "address:port" once it says it started.
function Env:dnsmasq(address)
  local port = tonumber((read_command(python() .. " " .. quote(FIXTURES .. "/free_port.py") .. " " .. address)))
  assert(port, "no free UDP port on " .. address)
  local command = string.format(
    -- $$ is timeout's pid once sh execs it; timeout passes our SIGTERM on.
    "echo $$; exec timeout %d dnsmasq --no-daemon --conf-file=%s --port=%d --listen-address=%s "
      .. "--bind-interfaces --pid-file= --user=root 2>&1",
    SERVER_LIFETIME_SECONDS, quote(FIXTURES .. "/dnsmasq.conf"), port, address)
  local pipe = popen(command)
  local pid = tonumber(pipe:read("*l"))
  self.servers[#self.servers + 1] = { pid = pid, pipe = pipe }
  local log = {}
  for line in pipe:lines() do
    log[#log + 1] = line
    if line:match("started, version") then
      return string.format("%s:%d", address, port)
    end
  end
  error("dnsmasq did not start:\n" .. table.concat(log, "\n"), 2)
end

-- Clients -------------------------------------------------------------------------------

-- prefix: shell run first (entering the cgroup); wrapper: words the client
-- is exec'd through (`ip netns exec NAME `).
local function run_client(prefix, mode, host, port, count, options, wrapper)
  local command = string.format("timeout -k 1 %d sh -c %s", CLIENT_TIMEOUT_SECONDS,
    quote(string.format("%sexec %s%s %s %s %s %d %d %s", prefix, wrapper or "", python(),
      quote(FIXTURES .. "/client.py"), mode, host, port, count or 1, options or "")))
  local output, ok = read_command(command)
  local decoded_ok, run = pcall(cjson.decode, output)
  if not ok or not decoded_ok or type(run) ~= "table" then
    error("client failed: " .. command .. "\n" .. output, 3)
  end
  return run
end

local function enter_cgroup(cgroup)
  return "echo $$ > " .. quote(cgroup .. "/cgroup.procs") .. " && "
end

-- client.py in a process of this environment's cgroup (translated).
-- mode: "tcp", "udp-unconnected" or "udp-connected"; options e.g.
-- "--align-second". Returns {pid = N, results = {...}} (see client.py).
function Env:client_inside(mode, host, port, count, options)
  return run_client(enter_cgroup(self.cgroup), mode, host, port, count, options)
end

-- client.py inside the cgroup and inside network namespace `netns` (one of
-- Env:netns): a client of another netns cookie, as a pod is.
function Env:client_in_netns(netns, mode, host, port, count, options)
  return run_client(enter_cgroup(self.cgroup), mode, host, port, count, options,
    "ip netns exec " .. quote(netns) .. " ")
end

-- A cgroup below this environment's (relative: "a/b", its parent made
-- first), removed at close before the environment's own. Returns its path.
function Env:child_cgroup(relative)
  local path = self.cgroup .. "/" .. relative
  assert(lfs.mkdir(path))
  self.child_cgroups = self.child_cgroups or {}
  self.child_cgroups[#self.child_cgroups + 1] = path
  return path
end

-- client.py in a process of cgroup (e.g. one of Env:child_cgroup, or an
-- agent's test cgroup). wrapper: words the client is exec'd through, e.g.
-- "taskset -c 0 " (its pid stays the client's).
function M.client_in_cgroup(cgroup, mode, host, port, count, options, wrapper)
  return run_client(enter_cgroup(cgroup), mode, host, port, count, options, wrapper)
end

-- The same client in a process outside the cgroup (not translated).
function M.client_outside(mode, host, port, count, options)
  return run_client("", mode, host, port, count, options)
end

-- A pausing mode of client.py ("tcp-pause", "udp-pause") inside the cgroup:
-- `during_pause(first_result)` runs while the client waits between its two
-- steps. Returns the client's {pid, results = {first, second}}. netns: a
-- network namespace of this environment (Env:netns) to run it in, or nil.
function Env:client_inside_pausing(mode, host, port, during_pause, netns)
  self.pauses = (self.pauses or 0) + 1
  local pause_file = string.format("/tmp/%s-pause-%d", self.name, self.pauses)
  os.remove(pause_file)
  local command = string.format("timeout -k 1 %d sh -c %s", CLIENT_TIMEOUT_SECONDS,
    quote(string.format("%sexec %s%s %s %s %s %d 1 --pause-file %s", enter_cgroup(self.cgroup),
      netns and "ip netns exec " .. quote(netns) .. " " or "", python(), quote(FIXTURES .. "/client.py"), mode, host,
      port, quote(pause_file))))
  local pipe = popen(command)
  local first_line = pipe:read("*l")
  local ok, err = pcall(function()
    local decoded_ok, first = pcall(cjson.decode, first_line or "")
    if not decoded_ok then
      error("client failed before its pause: " .. command .. "\n" .. tostring(first_line) .. (pipe:read("*a") or ""))
    end
    during_pause(first)
  end)
  assert(io.open(pause_file, "w")):close()
  local rest = pipe:read("*a")
  pipe:close()
  os.remove(pause_file)
  if not ok then
    error(err, 2)
  end
  local decoded_ok, run = pcall(cjson.decode, rest)
  if not decoded_ok or type(run) ~= "table" then
    error("client failed after its pause: " .. command .. "\n" .. rest, 2)
  end
  return run
end

-- client.py inside the cgroup, started and left running while the spec
-- changes the maps; `:wait()` reads its result (the same as client_inside's).
-- Pace the changes by the events of its connects, never by sleeping.
function Env:client_inside_started(mode, host, port, count, options)
  local command = string.format("timeout -k 1 %d sh -c %s", CLIENT_TIMEOUT_SECONDS,
    quote(string.format("%sexec %s %s %s %s %d %d %s", enter_cgroup(self.cgroup), python(),
      quote(FIXTURES .. "/client.py"), mode, host, port, count or 1, options or "")))
  local pipe = popen(command)
  local started = { pipe = pipe }
  -- closed by Env:close too, should the spec fail before it waits
  self.servers[#self.servers + 1] = started
  function started.wait()
    local output = pipe:read("*a")
    local decoded_ok, run = pcall(cjson.decode, output)
    if not decoded_ok or type(run) ~= "table" then
      error("client failed: " .. command .. "\n" .. output, 2)
    end
    return run
  end
  return started
end

-- dig from inside the cgroup: its full output and exit status.
function Env:dig_inside(server, port, name)
  local command = string.format("timeout -k 1 %d sh -c %s 2>&1", CLIENT_TIMEOUT_SECONDS,
    quote(string.format("%sexec dig @%s -p %d %s A +time=2 +tries=1", enter_cgroup(self.cgroup), server, port, name)))
  local output, ok = read_command(command)
  return output, ok
end

-- Map programming ---------------------------------------------------------------------------

-- Programs one frontend and its backend slots through the applier the agent
-- uses (core.applier: its write order, stable slots), each frontend as an
-- owner of its own.
--   { address = "127.10.0.1", port = 80, protocol = "TCP"|"UDP",
--     type = "service"|"localRedirect"|"balancing", mode = "ClusterIP"|...,
--     id = 101, backends = { "127.0.0.2:41234", ... },
--     local_count = 0, local_only = false, affinity_seconds = 0 }
-- Returns the service key (cdata).
local function frontend_owner(frontend)
  return string.format("spec/%s:%d/%s/%s", frontend.address, frontend.port, frontend.protocol or "TCP",
    frontend.type or "service")
end

function Env:applier()
  self.applier_handle = self.applier_handle or check(core().applier(self.dp), "no applier", "core.applier")
  return self.applier_handle
end

function Env:frontend(frontend)
  local key = abi.service_key(frontend.address, frontend.port, frontend.protocol or "TCP", frontend.type or "service")
  local backends = frontend.backends or {}
  local local_count = frontend.local_count or 0
  local values = {}
  for slot, endpoint in ipairs(backends) do
    local address, port = M.split_endpoint(endpoint)
    values[slot] = abi.backend_value(address, port, slot <= local_count)
  end
  local owner = frontend_owner(frontend)
  local stats = check(self:applier():apply(owner, { owner = owner,
    frontends = { { key = key, value = service_value(frontend, #backends), backends = values } } }),
    "apply failed", "apply " .. owner)
  self:note_departed(stats)
  self.frontends[key] = frontend
  return key
end

-- Replaces a programmed frontend's backends (the applier keeps each staying
-- backend in its slot; a newcomer takes a leaver's).
function Env:set_backends(key, backends)
  local frontend = self.frontends[key]
  frontend.backends = backends
  self:frontend(frontend)
end

-- Rewrites a programmed frontend with some fields changed, e.g. {id = 9}.
function Env:update_frontend(key, changes)
  local frontend = self.frontends[key]
  for field, value in pairs(changes) do
    frontend[field] = value
  end
  return self:frontend(frontend)
end

-- Removes one backend the way the agent keeps slots dense: the last slot
-- moves into the hole (the applier's stable slots).
function Env:remove_backend(key, endpoint)
  local backends = {}
  for _, other in ipairs(self.frontends[key].backends) do
    if other ~= endpoint then
      backends[#backends + 1] = other
    end
  end
  self:set_backends(key, backends)
end

function Env:delete_frontend(key)
  self:note_departed(check(self:applier():forget(frontend_owner(self.frontends[key])), "forget failed",
    "applier forget"))
  self.frontends[key] = nil
end

-- The (UDP frontend, backend) pairs the applies so far took out, kept until
-- Env:destroy_stale_sockets hands them to the datapath (as the agent does
-- after each round).
function Env:note_departed(stats)
  self.departed = self.departed or {}
  for _, pair in ipairs(stats.departed or {}) do
    self.departed[#self.departed + 1] = pair
  end
end

-- Runs the stale-socket iterator over the pairs noted, in this process's
-- network namespace and those of the processes in the cgroup; returns how
-- many sockets it destroyed.
function Env:destroy_stale_sockets()
  local destroyed = check(self.dp:destroy_stale_sockets(self.departed or {}, self.cgroup), "destroy failed",
    "dp:destroy_stale_sockets")
  self.departed = {}
  return destroyed
end

-- A node's address: connects to it on a NodePort resolve as the NodePort
-- frontend (address "*"). The node tables are one owner ("node"), as in the
-- agent: every address given so far.
function Env:node_ip(address, node_id)
  local key = ffi.new("struct node_ip_key")
  key.address = assert(abi.ipv4_to_u32(address))
  local value = ffi.new("struct node_ip_value")
  value.node_id = node_id or 1
  self.node_ips = self.node_ips or {}
  self.node_ips[#self.node_ips + 1] = { key = key, value = value }
  check(self:applier():apply("node", { owner = "node", frontends = {}, node_ips = self.node_ips }),
    "apply failed", "apply node " .. address)
end

-- Loop avoidance: clients in cgroup `cgroup_id` (or below it) skip the
-- LocalRedirect frontend `key`. The pair goes in with bpftool, outside the
-- applier, so that the datapath is tested on its own (and a full map's
-- refusal is bpftool's error).
function Env:redirect_loop(cgroup_id, key, service_id)
  local loop_key = ffi.new("struct redirect_loop_key")
  loop_key.cgroup_id = cgroup_id
  loop_key.frontend = key
  local value = ffi.new("struct redirect_loop_value")
  value.service_id = service_id or 0
  bpftool_write.update(self.bpffs .. "/map_redirect_loop", loop_key, value)
end

function Env:configure(settings)
  return check(self.dp:configure(settings), "configure failed", "dp:configure")
end

-- Events ------------------------------------------------------------------------------------------

-- Polls the ring buffer until `count` events arrived or `timeout` seconds
-- passed; returns what arrived (the caller asserts the count).
function Env:events(count, timeout)
  self.reader = self.reader or check(self.dp:events(), "no reader", "dp:events()")
  local events = {}
  local deadline = M.now() + (timeout or 2)
  repeat
    local batch = check(self.reader:poll(50), "poll failed", "events:poll")
    for _, event in ipairs(batch) do
      events[#events + 1] = event
    end
  until #events >= count or M.now() >= deadline
  return events
end

-- Whatever events are already there (or arrive within `timeout` seconds).
function Env:drain_events(timeout)
  return self:events(math.huge, timeout or 0.2)
end

-- Teardown ------------------------------------------------------------------------------------------

local function kill_servers(self)
  for _, server in ipairs(self.servers) do
    if server.pid then
      os.execute("kill " .. server.pid .. " 2>/dev/null")
    end
    server.pipe:close()
  end
  self.servers = {}
end

-- An exiting client may keep a cgroup busy for a moment.
local function remove_cgroup_dir(path)
  local deadline = M.now() + 2
  repeat
    if lfs.rmdir(path) or not exists(path) then
      return true
    end
    M.sleep(0.02)
  until M.now() >= deadline
  return false
end

local function remove_cgroup(self)
  if not self.cgroup_created then
    return true
  end
  local children = self.child_cgroups or {}
  for i = #children, 1, -1 do -- the deepest first
    if not remove_cgroup_dir(children[i]) then
      return false, "cannot remove cgroup " .. children[i]
    end
    children[i] = nil
  end
  if remove_cgroup_dir(self.cgroup) then
    self.cgroup_created = false
    return true
  end
  return false, "cannot remove cgroup " .. self.cgroup
end

local function remove_netns(self)
  local problems = {}
  for _, name in ipairs(self.netns_names or {}) do
    local output = read_command("ip netns del " .. quote(name) .. " 2>&1 && echo netns-deleted")
    if not output:match("netns%-deleted%s*$") then
      problems[#problems + 1] = "ip netns del " .. name .. ": " .. output
    end
  end
  self.netns_names = nil
  if #problems > 0 then
    return false, table.concat(problems, "; ")
  end
  return true
end

-- Removes what an unpin left behind, only ever inside our own directory.
local function remove_pin_dir(self)
  if not exists(self.bpffs) then
    return true
  end
  assert(self.bpffs:sub(1, #BPFFS_ROOT + 1 + #NAME_PREFIX) == BPFFS_ROOT .. "/" .. NAME_PREFIX)
  os.execute("rm -rf " .. quote(self.bpffs))
  if not self.loaded then
    return true -- core.load failed, and said why; its leftovers are gone now
  end
  return false, "dp:unpin() left " .. self.bpffs .. " behind"
end

-- Kills the servers, unpins and detaches, removes the cgroup. Always runs to
-- the end; raises afterwards if something could not be undone.
function Env:close()
  local problems = {}
  kill_servers(self)
  if self.reader then
    self.reader:close()
    self.reader = nil
  end
  if self.applier_handle then
    self.applier_handle:close() -- its own map fds
    self.applier_handle = nil
  end
  if self.dp then
    local ok, err = true, nil
    if not self.unpinned then
      ok, err = self.dp:unpin()
    end
    if not ok then
      problems[#problems + 1] = "dp:unpin(): " .. tostring(err)
    end
    self.dp:close()
    self.dp = nil
  end
  for _, step in ipairs({ remove_netns, remove_pin_dir, remove_cgroup }) do
    local ok, err = step(self)
    if not ok then
      problems[#problems + 1] = err
    end
  end
  if #problems > 0 then
    error("teardown of " .. self.name .. ": " .. table.concat(problems, "; "), 2)
  end
end

-- For after_each: closes every environment opened since the last call.
function M.close_all()
  local envs = open_envs
  open_envs = {}
  local problems = {}
  for _, env in ipairs(envs) do
    local ok, err = pcall(env.close, env)
    if not ok then
      problems[#problems + 1] = tostring(err)
    end
  end
  if #problems > 0 then
    error(table.concat(problems, "\n"), 2)
  end
end

-- Reading results -------------------------------------------------------------------------------

-- How many results reached each backend: { ["127.0.0.2:41234"] = 101, ... }
function M.count_by_backend(results)
  local counts = {}
  for _, result in ipairs(results) do
    if result.backend then
      counts[result.backend] = (counts[result.backend] or 0) + 1
    end
  end
  return counts
end

-- The distinct values of one field over the results, sorted.
function M.distinct(results, field)
  local seen, list = {}, {}
  for _, result in ipairs(results) do
    local value = result[field]
    if value ~= nil and not seen[value] then
      seen[value] = true
      list[#list + 1] = value
    end
  end
  table.sort(list, function(a, b) return tostring(a) < tostring(b) end)
  return list
end

-- The results that failed (they carry errno).
function M.failures(results)
  local list = {}
  for _, result in ipairs(results) do
    if result.errno then
      list[#list + 1] = result
    end
  end
  return list
end

M.EHOSTUNREACH = 113
M.ECONNREFUSED = 111
M.ECONNABORTED = 103
M.EDESTADDRREQ = 89

return M
