-- `balancing-agent plan`: what the agent would program on one node, computed
-- from the same objects and the same reconcile modules, printed, nothing
-- touched (no root, no kernel).
--
--   balancing-agent plan --manifests DIR [--node-name NAME] [--json] [--out-cluster]
--                        [--service-proxy-name NAME] [--lua-dir DIR] [--log-level LEVEL]
--
-- Stdout carries the document alone (the JSON of CONTRACTS.md with --json,
-- else aligned tables); log lines (balancing.log, JSON) go to stderr.
-- Exit status: 0 when the plan was printed; 1 when it was printed but a
-- module failed (to load, or for some owner: those owners are missing from
-- it); 2 for bad options or a missing or unreadable directory.
local M = {}

local PROGRAM = "balancing-agent plan"

M.USAGE = [[
usage: balancing-agent plan --manifests DIR [options]

Prints the frontends and backends the agent would program on this node, and the
objects it would refuse, from the objects in DIR; touches nothing, needs no root.

options (each also read from the environment variable in brackets):
  --manifests DIR       read objects from *.json, *.yaml, *.yml in DIR [BALANCING_MANIFESTS]
  --node-name NAME      the node to plan for (default: the host name) [NODE_NAME]
  --json                the JSON document ("frontends", "rejected") instead of tables
  --out-cluster         plan for an agent outside the cluster [BALANCING_OUT_CLUSTER=1]
  --service-proxy-name NAME
                        also plan Services labelled service.kubernetes.io/service-proxy-name=NAME
                        (others with that label are left to their proxy) [BALANCING_SERVICE_PROXY_NAME]
  --lua-dir DIR         Lua override directory (default /etc/balancing/lua) [BALANCING_LUA_DIR]
  --log-level LEVEL     debug, info, warn, error (default info) [BALANCING_LOG_LEVEL]
  --help                this text

Without --manifests, the objects are read from the API server as the agent reads them
(one complete list of each kind; nothing is written to the cluster):
  --kubeconfig PATH     API server access from outside a pod [KUBECONFIG]; in a pod, the
                        service account (KUBERNETES_SERVICE_HOST) when not given

The agent's other options (--cgroup, --bpffs, --listen, --bpf-log-level,
--redirect-qos-limit) are accepted and do not change the plan.

Exit status: 0 plan printed; 1 plan printed but a Lua module failed (log on stderr), or
the API server could not be read; 2 bad option, unreadable directory or kubeconfig.
]]

-- The options plan takes, and the agent's options it accepts so that an
-- agent command line still works with "plan" inserted.
local OPTIONS = {
  ["manifests"] = { value = true, env = "BALANCING_MANIFESTS" },
  ["node-name"] = { value = true, env = "NODE_NAME" },
  ["json"] = { value = false },
  ["out-cluster"] = { value = false, env = "BALANCING_OUT_CLUSTER" },
  ["service-proxy-name"] = { value = true, env = "BALANCING_SERVICE_PROXY_NAME" },
  ["lua-dir"] = { value = true }, -- the host reads BALANCING_LUA_DIR itself
  ["log-level"] = { value = true, env = "BALANCING_LOG_LEVEL" },
  ["kubeconfig"] = { value = true, env = "KUBECONFIG" },
  ["cgroup"] = { value = true, ignored = true },
  ["bpffs"] = { value = true, ignored = true },
  ["listen"] = { value = true, ignored = true },
  ["bpf-log-level"] = { value = true, ignored = true },
  ["redirect-qos-limit"] = { value = true, ignored = true },
}

local LOG_LEVELS = { debug = true, info = true, warn = true, error = true }

local function host_name()
  local ok, name = pcall(function()
    local ffi = require("ffi")
    pcall(ffi.cdef, "int gethostname(char *name, size_t len);")
    local buffer = ffi.new("char[256]")
    if ffi.C.gethostname(buffer, 256) ~= 0 then
      return nil
    end
    buffer[255] = 0
    return ffi.string(buffer)
  end)
  if ok and name and name ~= "" then
    return name
  end
  local file = io.open("/proc/sys/kernel/hostname", "r")
  if file then
    name = file:read("*l")
    file:close()
    return name
  end
end

-- argv → options table, or nil, "one line naming the option". The
-- environment fills what the command line does not give.
function M.parse_args(argv, getenv)
  getenv = getenv or os.getenv
  local given = {}
  local i = 1
  while i <= #argv do
    local arg = argv[i]
    if arg == "--help" or arg == "-h" then
      return { help = true }
    end
    local name, inline = arg:match("^%-%-([^=]+)=(.*)$")
    name = name or arg:match("^%-%-(.+)$")
    if not name then
      return nil, string.format('unexpected argument "%s" (see --help)', arg)
    end
    local spec = OPTIONS[name]
    if not spec then
      return nil, string.format("unknown option --%s (see --help)", name)
    end
    local value
    if not spec.value then
      if inline then
        return nil, string.format("--%s takes no value", name)
      end
      value = true
    elseif inline then
      value = inline
    else
      value = argv[i + 1]
      if value == nil then
        return nil, string.format("--%s needs a value", name)
      end
      i = i + 1
    end
    if spec.value and value == "" then
      return nil, string.format("--%s: empty value", name)
    end
    given[name] = value
    i = i + 1
  end

  local options = { json = given.json == true, lua_dir = given["lua-dir"] }

  options.manifests = given.manifests or getenv("BALANCING_MANIFESTS")
  if options.manifests == "" then
    options.manifests = nil
  end
  options.service_proxy_name = given["service-proxy-name"] or getenv("BALANCING_SERVICE_PROXY_NAME")
  if options.service_proxy_name == "" then
    options.service_proxy_name = nil
  end
  options.node_name = given["node-name"] or getenv("NODE_NAME")
  if options.node_name == "" then
    options.node_name = nil
  end

  if given["out-cluster"] then
    options.out_cluster = true
  else
    local env = getenv("BALANCING_OUT_CLUSTER")
    if env == nil or env == "" or env == "0" or env == "false" then
      options.out_cluster = false
    elseif env == "1" or env == "true" then
      options.out_cluster = true
    else
      return nil, string.format('BALANCING_OUT_CLUSTER: "%s" is not 1 or 0', env)
    end
  end

  local level, source = given["log-level"], "--log-level"
  if not level and getenv("BALANCING_LOG_LEVEL") and getenv("BALANCING_LOG_LEVEL") ~= "" then
    level, source = getenv("BALANCING_LOG_LEVEL"), "BALANCING_LOG_LEVEL"
  end
  if level and not LOG_LEVELS[level] then
    return nil, string.format('%s: "%s" is not one of debug, info, warn, error', source, level)
  end
  options.log_level = level

  options.kubeconfig = given.kubeconfig or getenv("KUBECONFIG")
  if options.kubeconfig == "" then
    options.kubeconfig = nil
  end
  local in_pod = getenv("KUBERNETES_SERVICE_HOST")
  if not options.manifests and not options.kubeconfig and (not in_pod or in_pod == "") then
    return nil, "no source: give --manifests DIR, or --kubeconfig PATH outside a pod"
  end
  if not options.node_name then
    options.node_name = host_name()
    if not options.node_name then
      return nil, "--node-name: not given and the host name is unknown"
    end
  end
  return options
end

-- Modules that stay loaded when plan.main switches the override directory
-- in-process: the plan itself, the log (its sink and level belong to the
-- caller) and the FFI declarations.
local KEEP_LOADED = {
  ["balancing.plan"] = true, ["balancing.log"] = true, ["balancing.abi"] = true,
  ["balancing.core"] = true, ["balancing.host"] = true,
}

-- --lua-dir given to plan.main in a Lua state whose host did not already put
-- it on the path (a spec, a script): put it first on package.path and unload
-- the balancing.* modules so that the overrides are the ones required.
-- Returns a function that restores the path and the loaded modules.
local function use_override_dir(dir)
  local host = package.loaded["balancing.host"]
  dir = dir and dir:gsub("/+$", "")
  if not dir or dir == "" or (type(host) == "table" and host.override_dir == dir) then
    return function() end
  end
  local previous_path = package.path
  local saved = {}
  for name, module in pairs(package.loaded) do
    if name:match("^balancing%.") and not KEEP_LOADED[name] then
      saved[name] = module
    end
  end
  for name in pairs(saved) do
    package.loaded[name] = nil
  end
  package.path = dir .. "/?.lua;" .. dir .. "/?/init.lua;" .. previous_path
  return function()
    package.path = previous_path
    for name in pairs(package.loaded) do
      if name:match("^balancing%.") and not KEEP_LOADED[name] then
        package.loaded[name] = nil
      end
    end
    for name, module in pairs(saved) do
      package.loaded[name] = module
    end
  end
end

-- A file name relative to the manifest directory, so that outputs do not
-- depend on where the directory is.
local function relative(dir, file)
  file = tostring(file or "?")
  local prefix = dir:gsub("/+$", "") .. "/"
  if file:sub(1, #prefix) == prefix then
    return file:sub(#prefix + 1)
  end
  return file
end

local function object_name(obj)
  local meta = type(obj) == "table" and type(obj.metadata) == "table" and obj.metadata or {}
  local name = type(meta.name) == "string" and meta.name or "?"
  if type(meta.namespace) == "string" and meta.namespace ~= "" then
    return meta.namespace .. "/" .. name
  end
  return name
end

local function object_kind(obj)
  return type(obj) == "table" and type(obj.kind) == "string" and obj.kind or "?"
end

-- The core of plan, without options or output: the view and the rejections
-- for one node from a manifest directory or the API server.
--   options: { manifests = DIR | kubeconfig = PATH (or in a pod: neither),
--              node_name = NAME, out_cluster = bool, service_proxy_name = NAME | nil }
-- Returns { view, entries (the desired entries of every owner reconciled),
-- rejected, failures (modules that failed to load or for an owner), store },
-- or nil, err[, "usage"] when the source cannot be read ("usage": the
-- directory or kubeconfig given is at fault).
-- The objects of a manifest directory into the store; what it refuses into
-- rejected. nil, err when the directory cannot be read.
local function read_manifests(store, options, rejected)
  local log = require("balancing.log")
  local manifests = require("balancing.manifests")
  local store_module = require("balancing.store")
  local trim = require("balancing.trim")

  local objects, problems = manifests.read_dir(options.manifests)
  if not objects then
    return nil, "--manifests: " .. tostring(problems)
  end
  for _, problem in ipairs(problems or {}) do
    local file = relative(options.manifests, problem.file)
    local reason = tostring(problem.message)
    if problem.index then
      reason = "document " .. tostring(problem.index) .. ": " .. reason
    end
    log.warn("manifest not read", { file = file, index = problem.index, error = tostring(problem.message) })
    rejected[#rejected + 1] = { kind = "File", name = file, reason = reason }
  end

  local known = {}
  for _, kind in ipairs(store_module.KINDS) do
    known[kind] = true
  end
  for _, obj in ipairs(objects) do
    local ok, err = true, nil
    if not known[object_kind(obj)] then
      -- a Deployment or ConfigMap next to the Services is not an error: the
      -- agent reads only the kinds it needs
      log.debug("object ignored", { kind = object_kind(obj), name = object_name(obj) })
    else
      -- trimmed to what the agent reads, as the agent's sources do
      ok, err = store:upsert(trim.object(obj))
    end
    if not ok then
      log.warn("object refused", { kind = object_kind(obj), name = object_name(obj), error = tostring(err) })
      rejected[#rejected + 1] = { kind = object_kind(obj), name = object_name(obj), reason = tostring(err) }
    end
  end
  return true
end

-- How long plan waits for every kind's first complete list.
local API_LIST_SECONDS = 60

-- Every kind listed once from the API server into the store, through the
-- agent's own client and source (balancing.kube_source); nothing is written
-- to the cluster. nil, err, "usage" for a kubeconfig it cannot use; nil, err
-- when the lists did not complete in time.
local function read_api_server(store, options)
  local kubeconfig = require("balancing.kubeconfig")
  local kube_source = require("balancing.kube_source")
  local access, err
  if options.kubeconfig then
    access, err = kubeconfig.from_file(options.kubeconfig)
  else
    access, err = kubeconfig.in_cluster(os.getenv)
  end
  if not access then
    return nil, err, "usage"
  end
  local src
  src, err = kube_source.new(store, { access = access, node_name = options.node_name,
    service_proxy_name = options.service_proxy_name })
  if not src then
    return nil, "API server: " .. tostring(err)
  end
  local deadline = os.time() + API_LIST_SECONDS
  -- (the pods of every node are listed too when a BalancingPolicy sends to pods)
  while os.time() < deadline do
    src:follow_pods_as_needed()
    if src:synced() then
      break
    end
    src.client:run_once(0.5)
  end
  local waiting = {}
  for kind, stats in pairs(src:stats()) do
    if not stats.synced then
      waiting[#waiting + 1] = kind
    end
  end
  src:close()
  if #waiting > 0 then
    table.sort(waiting)
    return nil, string.format("API server %s: not listed within %d s: %s (see the log)", access.server,
      API_LIST_SECONDS, table.concat(waiting, ", "))
  end
  return true
end

function M.compute(options)
  local log = require("balancing.log")
  local store_module = require("balancing.store")
  local frontends = require("balancing.frontends")

  local rejected = {}
  local store = store_module.new({ node_name = options.node_name,
    service_proxy_name = options.service_proxy_name })
  local done, err, usage
  if options.manifests then
    done, err, usage = read_manifests(store, options, rejected)
    usage = usage or (not done and "usage")
  else
    done, err, usage = read_api_server(store, options)
  end
  if not done then
    return nil, err, usage
  end
  store:take_dirty()

  if not store:node(options.node_name) then
    log.warn("this node is not among the objects: no labels, zone or addresses of its own",
      { node = options.node_name })
  end

  -- the same driver as the agent, over every owner at once
  local driver = require("balancing.reconciler").new({ store = store, node_name = options.node_name,
    out_cluster = options.out_cluster })
  local round = driver:run(store:owners())
  local failures = #round.failures
  for _ in pairs(driver.load_errors) do
    failures = failures + 1
  end
  for _, r in ipairs(driver:all_rejections()) do
    rejected[#rejected + 1] = r
  end
  local all_entries = driver:all_entries()
  return {
    view = frontends.from_entries(all_entries, store.ids),
    entries = all_entries, -- the desired entries themselves, for a caller that writes them
    store = store,         -- the objects, for a caller that names what the entries serve
    rejected = frontends.normalize_rejected(rejected),
    failures = failures,
  }
end

-- main(argv[, streams]) → exit status. streams = { stdout = w, stderr = w },
-- anything with :write, for specs; io.stdout/io.stderr by default.
function M.main(argv, streams)
  local stdout = streams and streams.stdout or io.stdout
  local stderr = streams and streams.stderr or io.stderr
  local getenv = streams and streams.getenv or os.getenv

  local options, err = M.parse_args(argv or {}, getenv)
  if not options then
    stderr:write(PROGRAM, ": ", err, "\n")
    return 2
  end
  if options.help then
    stdout:write(M.USAGE)
    return 0
  end

  local restore_path = use_override_dir(options.lua_dir)
  local log = require("balancing.log")
  local previous_level = log.level()
  if options.log_level then
    log.set_level(options.log_level)
  end

  -- One short run over a heap that only grows: every object, then every
  -- entry, the view and the text stay alive until the output is written, and
  -- what is garbage is a small part of what is allocated (scripts/bench/plan:
  -- 354 MB allocated at 10,000 Services, most of it live at the end). A
  -- collection would walk that heap to free little, so the collector rests
  -- while the plan is computed; the process exits right after.
  collectgarbage("stop")
  local ok, result, compute_err, usage = xpcall(M.compute, debug.traceback, options)
  collectgarbage("restart")
  restore_path()
  if not ok then
    -- reading or loading the objects failed (reconcile errors are caught per
    -- owner inside): no plan to print
    log.error("plan failed", { error = tostring(result) })
    log.set_level(previous_level)
    return 1
  end
  log.set_level(previous_level)
  if not result then
    stderr:write(PROGRAM, ": ", tostring(compute_err), "\n")
    return usage and 2 or 1
  end

  local frontends = require("balancing.frontends")
  if options.json then
    stdout:write(frontends.encode(frontends.document(result.view, result.rejected)), "\n")
  else
    stdout:write(frontends.render_table(result.view), "\n", frontends.render_rejected(result.rejected))
  end
  return result.failures > 0 and 1 or 0
end

return M
