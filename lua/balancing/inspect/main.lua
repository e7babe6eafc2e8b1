-- The `inspect` command (build/bin/inspect calls main(argv)): the command
-- line of CONTRACTS.md. showMapData reads the pinned maps (the agent may be
-- stopped) and prints them decoded, the owners named from the state the
-- agent leaves under its run directory; traceMapData shows one object's
-- entries and why it lacks any (balancing.inspect.trace); setMapData
-- configure changes the running datapath's settings. Anything else is
-- refused with one line, exit 2.
local M = {}

local DEFAULT_BPFFS = "/sys/fs/bpf/balancing"
local DEFAULT_RUN_DIR = "/run/balancing"

local USAGE = [[
usage: inspect [--bpffs PATH] [--json] showMapData all|service|backend|affinity|natRecord|nodeIp|nodeProxyIp|configure
       inspect [--bpffs PATH] [--json] traceMapData service NAMESPACE NAME
       inspect [--bpffs PATH] [--json] traceMapData localRedirect NAMESPACE POLICY
       inspect [--bpffs PATH] [--json] traceMapData balancing NAMESPACE NAME
       inspect [--bpffs PATH] setMapData configure bpfLogLevel|redirectQosLimit|events VALUE

options (each also read from the environment variable in brackets):
  --bpffs PATH     pin directory (default /sys/fs/bpf/balancing) [BALANCING_BPFFS]
  --run-dir DIR    the agent's run directory, where it keeps state.json (default
                   /run/balancing) [BALANCING_RUN_DIR]
  --json           one JSON document on stdout instead of tables
  --lua-dir DIR    Lua override directory (default /etc/balancing/lua) [BALANCING_LUA_DIR]
  --help           this text

showMapData prints the pinned maps decoded (service: the frontends with their
backends, as `balancing-agent plan` prints them), owners named from the agent's
state. traceMapData prints one object's frontends and backends as programmed, and
why it has none or fewer than it asks for (policies are cluster-scoped: NAMESPACE
is not used; for balancing, NAME may be the policy or the Service its frontend
matches). setMapData configure changes the running datapath.
Exit status: 0 done; 1 the maps (or, for traceMapData, the agent's state) cannot
be read or written; 2 a bad command line, or an object the agent does not know.
]]

-- showMapData's objects and the maps they show.
local MAP_OF = {
  service = { "map_service" }, backend = { "map_backend" }, affinity = { "map_affinity" },
  natRecord = { "map_nat_record", "map_nat_record_tcp" }, nodeIp = { "map_node_ip" },
  nodeProxyIp = { "map_node_proxy_ip" }, configure = { "map_configure" },
}
local ALL_MAPS = { "map_backend", "map_affinity", "map_nat_record", "map_nat_record_tcp", "map_node_ip",
  "map_node_proxy_ip", "map_configure" }

local OBJECTS = {
  showMapData = {
    all = true, service = true, backend = true, affinity = true, natRecord = true,
    nodeIp = true, nodeProxyIp = true, configure = true,
  },
  traceMapData = { service = true, localRedirect = true, balancing = true },
  setMapData = { configure = true },
}

local function sorted_keys(set)
  local keys = {}
  for key in pairs(set) do
    keys[#keys + 1] = key
  end
  table.sort(keys)
  return table.concat(keys, ", ")
end

-- One line on stderr, exit status 2.
local function usage_error(stderr, text)
  stderr:write("inspect: ", text, "\n")
  return 2
end

local function say_not_pinned(options, stderr, err)
  stderr:write("inspect: no maps pinned under ", options.bpffs, ": ", tostring(err or "none found"),
    " (is the agent installed? --bpffs names another pin directory)\n")
end

local function open_maps(options, stderr)
  local core = require("balancing.core")
  local handles, err = core.open_maps(options.bpffs)
  if not handles or next(handles) == nil then
    say_not_pinned(options, stderr, err)
    return nil
  end
  return handles
end

-- main(argv[, io]) → exit status; io = { stdout = file, stderr = file } for specs.
function M.main(argv, streams)
  local stdout = streams and streams.stdout or io.stdout
  local stderr = streams and streams.stderr or io.stderr
  local getenv = streams and streams.getenv or os.getenv
  local words = {}
  local options = { bpffs = getenv("BALANCING_BPFFS") or DEFAULT_BPFFS, json = false,
    run_dir = getenv("BALANCING_RUN_DIR") or DEFAULT_RUN_DIR }
  if options.bpffs == "" then
    options.bpffs = DEFAULT_BPFFS
  end
  if options.run_dir == "" then
    options.run_dir = DEFAULT_RUN_DIR
  end
  local i = 1
  while i <= #argv do
    local arg = argv[i]
    if arg == "--help" or arg == "-h" then
      stdout:write(USAGE)
      return 0
    elseif arg == "--json" then
      options.json = true
    elseif arg == "--bpffs" or arg == "--run-dir" or arg == "--lua-dir" then
      if not argv[i + 1] or argv[i + 1] == "" then
        return usage_error(stderr, arg .. " needs a value")
      end
      if arg == "--bpffs" then
        options.bpffs = argv[i + 1]
      elseif arg == "--run-dir" then
        options.run_dir = argv[i + 1]
      end
      i = i + 1
    elseif arg:match("^%-%-bpffs=.") then
      options.bpffs = arg:match("^%-%-bpffs=(.*)$")
    elseif arg:match("^%-%-run%-dir=.") then
      options.run_dir = arg:match("^%-%-run%-dir=(.*)$")
    elseif arg:match("^%-%-lua%-dir=") then -- luacheck: ignore 542 (the host reads it)
    elseif arg:sub(1, 1) == "-" then
      return usage_error(stderr, "unknown option " .. arg .. " (see --help)")
    else
      words[#words + 1] = arg
    end
    i = i + 1
  end

  local command, object = words[1], words[2]
  if not command then
    return usage_error(stderr, "no subcommand: showMapData, traceMapData or setMapData (see --help)")
  end
  if not OBJECTS[command] then
    return usage_error(stderr, 'unknown subcommand "' .. command
      .. '": showMapData, traceMapData or setMapData (see --help)')
  end
  if not object then
    return usage_error(stderr, command .. " needs an object: " .. sorted_keys(OBJECTS[command]))
  end
  if not OBJECTS[command][object] then
    return usage_error(stderr, 'unknown object "' .. object .. '" for ' .. command .. ": "
      .. sorted_keys(OBJECTS[command]))
  end
  if command == "showMapData" then
    return M.show(options, object, stdout, stderr)
  elseif command == "setMapData" then
    return M.set_configure(options, words[3], words[4], #words, stdout, stderr)
  end
  if #words ~= 4 then
    return usage_error(stderr, "traceMapData " .. object .. " takes NAMESPACE and "
      .. (object == "localRedirect" and "POLICY" or "NAME") .. " (see --help)")
  end
  local handles = open_maps(options, stderr)
  if not handles then
    return 1
  end
  return require("balancing.inspect.trace").run(options, object, words[3], words[4], handles, stdout, stderr)
end

local function column_title(name)
  return (name:gsub("(%u)", "-%1")):upper()
end

-- The rows of one map as an aligned table under a heading.
local function render_map(name, rows, columns)
  local header, lines = {}, {}
  for i, column in ipairs(columns) do
    header[i] = column_title(column)
  end
  for r, row in ipairs(rows) do
    local cells = {}
    for c, column in ipairs(columns) do
      cells[c] = tostring(row[column] == nil and "-" or row[column])
    end
    lines[r] = cells
  end
  local frontends = require("balancing.frontends")
  return string.format("%s (%d entries)\n", name, #rows) .. frontends.render_rows(header, lines)
end

-- showMapData OBJECT: the maps it names, decoded; service and all start with
-- the frontends and their backends as `balancing-agent plan` shows them.
function M.show(options, object, stdout, stderr)
  local maps = require("balancing.inspect.maps")
  local frontends = require("balancing.frontends")
  local handles = open_maps(options, stderr)
  if not handles then
    return 1
  end
  local names = object == "all" and ALL_MAPS or (object ~= "service" and MAP_OF[object] or {})
  local document, text = {}, {}
  if object == "all" or object == "service" then
    -- the owners' names: the agent's state, when it left one for these maps
    local state, state_err = require("balancing.inspect.state").load(options)
    if not state then
      stderr:write("inspect: owners not named: ", state_err, "\n")
    end
    local view, err = maps.frontend_view(handles, state and state.ids)
    if not view then
      stderr:write("inspect: ", tostring(err), "\n")
      return 1
    end
    document.frontends = setmetatable(view, frontends.array_mt)
    text[#text + 1] = frontends.render_table(view)
  end
  for _, name in ipairs(names) do
    local rows, err = maps.rows(handles, name)
    if not rows then
      stderr:write("inspect: ", tostring(err), "\n")
      return 1
    end
    document.maps = document.maps or {}
    document.maps[name] = setmetatable(rows, frontends.array_mt)
    text[#text + 1] = render_map(name, rows, maps.MAPS[name].columns)
  end
  if options.json then
    stdout:write(frontends.encode(document), "\n")
  else
    stdout:write(table.concat(text, "\n"))
  end
  return 0
end

-- setMapData configure bpfLogLevel verbose|info|error|off, redirectQosLimit
-- N, or events all|failures|off: one setting of the running datapath's
-- map_configure, through core.configure (the one write outside the applier:
-- it changes that setting alone and keeps the ABI version; the programs read
-- it on every call).
local CONFIGURE_FIELDS = { bpfLogLevel = "bpf_log_level", redirectQosLimit = "redirect_qos_limit",
  events = "events" }
local ENOENT = 2

function M.set_configure(options, setting, value, word_count, stdout, stderr)
  local maps = require("balancing.inspect.maps")
  if word_count ~= 4 or not CONFIGURE_FIELDS[setting] then
    return usage_error(stderr, "setMapData configure takes bpfLogLevel verbose|info|error|off, "
      .. "redirectQosLimit N or events all|failures|off")
  end
  local number
  if setting == "bpfLogLevel" then
    number = maps.LOG_LEVELS[value]
    if not number then
      return usage_error(stderr, 'bpfLogLevel: "' .. tostring(value) .. '" is not verbose, info, error or off')
    end
  elseif setting == "events" then
    number = maps.EVENTS[value]
    if not number then
      return usage_error(stderr, 'events: "' .. tostring(value) .. '" is not all, failures or off')
    end
  else
    number = value:match("^%d+$") and tonumber(value)
    if not number or number > 0xFFFFFFFF then
      return usage_error(stderr, 'redirectQosLimit: "' .. tostring(value)
        .. '" is not a whole number from 0 to 4294967295 (0: no limit)')
    end
  end
  local ok, err, code = require("balancing.core").configure(options.bpffs, { [CONFIGURE_FIELDS[setting]] = number })
  if not ok then
    if code == -ENOENT then
      say_not_pinned(options, stderr, err)
    else
      stderr:write("inspect: ", tostring(err), "\n")
    end
    return 1
  end
  stdout:write("map_configure: ", setting, " ", value, "\n")
  return 0
end

return M
