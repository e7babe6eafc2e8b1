-- The environment of the balancing.core specs (spec/core/loader_spec.lua,
-- maps_spec.lua, events_spec.lua): pin directories under /sys/fs/bpf and
-- cgroups under the cgroup2 mount that are unique to this run, and a teardown
-- that removes them on every exit (CONTRACTS.md, "Test safety").
--
--   local core_env = require("helpers.core_env")
--   after_each(core_env.close_all)
--   it("...", function()
--     local env = core_env.open(pending)  -- pending, or an error under BALANCING_REQUIRE_E2E=1
--     local dp = env:load{ max_services = 16 }
--     local cgroup = env:cgroup()
--     core_env.run_in_cgroup(cgroup, "exec some-client")
--   end)
local lfs = require("lfs")

local M = {}

local PREFIX = "balancing-spec-"
local BPFFS = "/sys/fs/bpf"

local counter = 0
local open_envs = {}

local function own_pid()
  local file = assert(io.open("/proc/self/stat", "r"))
  local pid = file:read("*n")
  file:close()
  return pid
end

local function effective_uid()
  for line in io.lines("/proc/self/status") do
    local uid = line:match("^Uid:%s+%d+%s+(%d+)")
    if uid then
      return tonumber(uid)
    end
  end
end

function M.quote(text)
  return "'" .. tostring(text):gsub("'", "'\\''") .. "'"
end

-- nil when the kernel specs can run here, else why not.
function M.unavailable_reason()
  if effective_uid() ~= 0 then
    return "not root"
  end
  local ok, core = pcall(require, "balancing.core")
  if not ok then
    return "balancing.core is not built: " .. tostring(core)
  end
  if type(core.load) ~= "function" then
    return "balancing.core has no load()"
  end
  local cgroup2, err = core.cgroup2_mount()
  if not cgroup2 then
    return err
  end
  local mounted, mount_err = core.mount_bpffs(BPFFS)
  if not mounted then
    return mount_err
  end
  return nil
end

local Env = {}
Env.__index = Env

function M.open(pending)
  local reason = M.unavailable_reason()
  if reason then
    if os.getenv("BALANCING_REQUIRE_E2E") == "1" then
      error("BALANCING_REQUIRE_E2E=1 and the core kernel specs cannot run: " .. reason, 2)
    end
    pending("needs root and BPF: " .. reason)
    return nil
  end
  local env = setmetatable({ core = require("balancing.core"), pin_dirs = {}, cgroups = {}, closers = {} }, Env)
  open_envs[#open_envs + 1] = env
  return env
end

local function unique_name()
  counter = counter + 1
  return string.format("%s%d-%d", PREFIX, own_pid(), counter)
end

-- A pin directory path of this run (not created: core.load creates it).
function Env:pin_dir()
  local path = BPFFS .. "/" .. unique_name()
  self.pin_dirs[#self.pin_dirs + 1] = path
  return path
end

-- A new cgroup under the cgroup2 mount, removed by close_all.
function Env:cgroup()
  local path = assert(self.core.cgroup2_mount()) .. "/" .. unique_name()
  assert(lfs.mkdir(path))
  self.cgroups[#self.cgroups + 1] = path
  return path
end

-- core.load into a fresh pin directory (opts.bpffs, when given, must come
-- from env:pin_dir()). Fails the spec with the loader's message.
function Env:load(opts)
  opts = opts or {}
  local copy = {}
  for key, value in pairs(opts) do
    copy[key] = value
  end
  copy.bpffs = copy.bpffs or self:pin_dir()
  local dp, err, code = self.core.load(copy)
  assert(dp, "core.load{bpffs = " .. copy.bpffs .. "}: " .. tostring(err) .. " (" .. tostring(code) .. ")")
  self:on_close(function()
    dp:close()
  end)
  return dp, copy.bpffs
end

function Env:on_close(fn)
  self.closers[#self.closers + 1] = fn
end

-- Starts a shell command in a new process inside cgroup; returns the pipe
-- of its output (stderr included). The sanitizer runtime the spec process
-- may have preloaded is not passed on.
function M.spawn_in_cgroup(cgroup, command)
  local script = 'echo $$ > "$1/cgroup.procs" && shift && unset LD_PRELOAD && exec sh -c "$1"'
  return assert(io.popen(string.format("sh -c %s sh %s %s 2>&1", M.quote(script), M.quote(cgroup),
    M.quote(command)), "r"))
end

-- Runs a shell command in a new process inside cgroup; returns its output
-- and whether it exited with 0.
function M.run_in_cgroup(cgroup, command)
  local pipe = M.spawn_in_cgroup(cgroup, command)
  local output = pipe:read("*a")
  local ok = pipe:close()
  return output, ok == true or ok == 0
end

-- A map value or key read back (a string of its bytes) as the struct ctype;
-- its size must be the struct's.
function M.decode(ctype, raw)
  local ffi = require("ffi")
  local value = ffi.new(ctype)
  assert(ffi.sizeof(value) == #raw, string.format("%s: %d bytes, not %d", ctype, #raw, ffi.sizeof(value)))
  ffi.copy(value, raw, #raw)
  return value
end

-- A TCP port free on 127.0.0.1 right now (for a backend a spec starts).
function M.free_port()
  local pipe = assert(io.popen("python3 -c 'import socket; s = socket.socket(); "
    .. "s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])'"))
  local port = tonumber(pipe:read("*l"))
  pipe:close()
  return port
end

-- Programs the frontend address:port/protocol as a ClusterIP Service with
-- owner ID id and one local backend 127.0.0.1:backend_port (no backend when
-- backend_port is nil).
function M.program_frontend(dp, frontend)
  local abi = require("balancing.abi")
  local ffi = require("ffi")
  local key = abi.service_key(frontend.address, frontend.port, frontend.protocol, "service")
  local value = ffi.new("struct service_value")
  value.service_id = frontend.id
  value.nat_mode = abi.C.NAT_MODE_CLUSTER_IP
  local backends = {}
  if frontend.backend_port then
    value.total_count, value.local_count = 1, 1
    backends[1] = abi.backend_value("127.0.0.1", frontend.backend_port, true)
  end
  -- through the applier the agent uses (its own map fds, closed here)
  local applier = assert(require("balancing.core").applier(dp))
  local owner = string.format("spec/%s:%d", frontend.address, frontend.port)
  local ok, err = applier:apply(owner, { owner = owner, frontends = { { key = key, value = value,
    backends = backends } } })
  applier:close()
  assert(ok, err)
end

function M.listdir(path)
  local names = {}
  if not lfs.attributes(path, "mode") then
    return names
  end
  for name in lfs.dir(path) do
    if name ~= "." and name ~= ".." then
      names[#names + 1] = name
    end
  end
  table.sort(names)
  return names
end

-- Removing the last pin of a link nobody holds detaches it, so deleting
-- every file of the pin directory also undoes an attach.
local function remove_dir(path, problems)
  if lfs.attributes(path, "mode") then
    local ok, err = lfs.rmdir(path)
    if not ok then
      problems[#problems + 1] = "rmdir " .. path .. ": " .. tostring(err)
    end
  end
end

local function remove_pin_dir(path, problems)
  for _, name in ipairs(M.listdir(path)) do
    local ok, err = os.remove(path .. "/" .. name)
    if not ok then
      problems[#problems + 1] = err
    end
  end
  remove_dir(path, problems)
end

function Env:close()
  local problems = {}
  for i = #self.closers, 1, -1 do
    local ok, err = pcall(self.closers[i])
    if not ok then
      problems[#problems + 1] = tostring(err)
    end
  end
  self.closers = {}
  collectgarbage() -- map handles and readers hold fds of the maps
  for _, path in ipairs(self.pin_dirs) do
    remove_pin_dir(path, problems)
  end
  for _, path in ipairs(self.cgroups) do
    remove_dir(path, problems)
  end
  return problems
end

-- after_each: tear down every environment opened since the last call; an
-- error lists what could not be removed.
function M.close_all()
  local problems = {}
  for _, env in ipairs(open_envs) do
    for _, problem in ipairs(env:close()) do
      problems[#problems + 1] = problem
    end
  end
  open_envs = {}
  if #problems > 0 then
    error("core spec teardown: " .. table.concat(problems, "; "))
  end
end

-- `bpftool -j cgroup tree CGROUP` as {attach_type = program name}.
function M.cgroup_programs(cgroup)
  local cjson = require("cjson")
  local pipe = assert(io.popen("bpftool -j cgroup tree " .. M.quote(cgroup) .. " 2>&1", "r"))
  local text = pipe:read("*a")
  pipe:close()
  local ok, tree = pcall(cjson.decode, text:match("%S") and text or "[]")
  assert(ok and type(tree) == "table", "bpftool cgroup tree: " .. text)
  local programs, count = {}, 0
  for _, entry in ipairs(tree) do
    if entry.cgroup == cgroup then
      for _, program in ipairs(entry.programs or {}) do
        programs[program.attach_type] = program.name
        count = count + 1
      end
    end
  end
  return programs, count
end

return M
