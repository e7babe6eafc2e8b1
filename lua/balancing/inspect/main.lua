-- The `inspect` command (build/bin/inspect calls main(argv)).
--
-- This version knows the command line of CONTRACTS.md and refuses anything
-- else clearly; reading the pinned maps (showMapData, traceMapData,
-- setMapData) comes with the running agent in a later issue, and until then
-- those subcommands say so and exit 2 rather than print something made up.
local M = {}

local USAGE = [[
usage: inspect [--bpffs PATH] [--json] showMapData all|service|backend|affinity|natRecord|nodeIp|nodeProxyIp|configure
       inspect [--bpffs PATH] [--json] traceMapData service NAMESPACE NAME
       inspect [--bpffs PATH] [--json] traceMapData localRedirect NAMESPACE POLICY
       inspect [--bpffs PATH] [--json] traceMapData balancing NAMESPACE NAME
       inspect [--bpffs PATH] setMapData configure bpfLogLevel|redirectQosLimit VALUE

options:
  --bpffs PATH     pin directory (default /sys/fs/bpf/balancing) [BALANCING_BPFFS]
  --json           one JSON document on stdout instead of tables
  --lua-dir DIR    Lua override directory (default /etc/balancing/lua) [BALANCING_LUA_DIR]
  --help           this text

Not built yet: the subcommands above are recognised, but reading and writing
the pinned maps comes in a later version; they exit with status 2.
]]

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

-- main(argv[, io]) → exit status; io = { stdout = file, stderr = file } for specs.
function M.main(argv, streams)
  local stdout = streams and streams.stdout or io.stdout
  local stderr = streams and streams.stderr or io.stderr
  local words = {}
  local i = 1
  while i <= #argv do
    local arg = argv[i]
    if arg == "--help" or arg == "-h" then
      stdout:write(USAGE)
      return 0
    elseif arg == "--json" then -- luacheck: ignore 542
    elseif arg == "--bpffs" or arg == "--lua-dir" then
      if not argv[i + 1] then
        return usage_error(stderr, arg .. " needs a value")
      end
      i = i + 1
    elseif arg:match("^%-%-bpffs=") or arg:match("^%-%-lua%-dir=") then -- luacheck: ignore 542
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
  return usage_error(stderr, command .. " " .. object
    .. ": reading the pinned maps is not built yet (a later version); "
    .. "'balancing-agent plan' shows what the agent would program")
end

return M
