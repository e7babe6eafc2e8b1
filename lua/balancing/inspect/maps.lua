-- The pinned maps read back for `inspect showMapData`: each map's entries
-- decoded through the header's structs into rows of readable fields, and the
-- frontends (map_service with the slots of map_backend) as the frontend
-- view of CONTRACTS.md. Reads only; works with the agent stopped.
--
--   local rows = maps.rows(handles, "map_service")   -- { {field = text|number, ...}, ... }
--   local view = maps.frontend_view(handles, ids)    -- as frontends.from_entries gives
--
-- handles: core.open_maps(bpffs). Owners' names need the ID registry of the
-- agent that programmed the maps; without it a frontend's owner is "".
local ffi = require("ffi")
local bit = require("bit")
local abi = require("balancing.abi")
local frontends = require("balancing.frontends")

local M = {}

local C = abi.C

-- A copy of the bytes as the struct (the dump's strings are not aligned and
-- not ours to point into).
local function as(ctype, bytes)
  local value = ffi.new(ctype)
  ffi.copy(value, bytes, math.min(#bytes, ffi.sizeof(value)))
  return value
end

local function address(u32)
  return abi.u32_to_ipv4(u32)
end

local function frontend_fields(row, key)
  row.address = key.address == 0 and "*" or address(key.address)
  row.port = abi.ntohs(key.port)
  row.protocol = abi.protocol_name(key.protocol)
  row.type = abi.nat_type_names[tonumber(key.nat_type)] or tostring(key.nat_type)
  return row
end

local function flag_names(flags, names)
  local out = {}
  for _, entry in ipairs(names) do
    if bit.band(flags, entry[1]) ~= 0 then
      out[#out + 1] = entry[2]
    end
  end
  return #out > 0 and table.concat(out, ",") or "-"
end

local SERVICE_FLAGS = { { C.SERVICE_FLAG_LOCAL_ONLY, "localOnly" } }
local BACKEND_FLAGS = { { C.BACKEND_FLAG_LOCAL, "local" } }

local LOG_LEVEL_NAMES = {
  [C.BPF_LOG_OFF] = "off", [C.BPF_LOG_ERROR] = "error", [C.BPF_LOG_INFO] = "info",
  [C.BPF_LOG_VERBOSE] = "verbose",
}
M.LOG_LEVELS = {}
for number, name in pairs(LOG_LEVEL_NAMES) do
  M.LOG_LEVELS[name] = number
end

local EVENTS_NAMES = { [C.EVENTS_ALL] = "all", [C.EVENTS_FAILURES] = "failures", [C.EVENTS_OFF] = "off" }
M.EVENTS = {}
for number, name in pairs(EVENTS_NAMES) do
  M.EVENTS[name] = number
end

local NAT_RECORD_COLUMNS = { "socketCookie", "backend", "backendPort", "type", "address", "port", "protocol", "dialed",
  "id" }

local function nat_record_row(key, value)
  local row = frontend_fields({ socketCookie = tostring(key.socket_cookie):gsub("ULL$", "") }, value.frontend)
  row.backend = address(key.address)
  row.backendPort = abi.ntohs(key.port)
  row.dialed = address(value.dialed_address)
  row.id = tonumber(value.service_id)
  return row
end

-- map name → { columns, decode(key_bytes, value_bytes, now_ns) → row[, dump =
-- map:dump's options] }
M.MAPS = {
  map_service = {
    columns = { "type", "address", "port", "protocol", "mode", "id", "total", "local", "affinity", "flags" },
    decode = function(k, v)
      local key, value = as("struct service_key", k), as("struct service_value", v)
      local row = frontend_fields({}, key)
      row.mode = abi.nat_mode_names[tonumber(value.nat_mode)] or tostring(value.nat_mode)
      row.id = tonumber(value.service_id)
      row.total = tonumber(value.total_count)
      row["local"] = tonumber(value.local_count)
      row.affinity = tonumber(value.affinity_seconds)
      row.flags = flag_names(value.flags, SERVICE_FLAGS)
      return row
    end,
  },
  map_backend = {
    columns = { "type", "address", "port", "protocol", "slot", "backend", "backendPort", "flags" },
    decode = function(k, v)
      local key, value = as("struct backend_key", k), as("struct backend_value", v)
      local row = frontend_fields({}, key.frontend)
      row.slot = tonumber(key.slot)
      row.backend = address(value.address)
      row.backendPort = abi.ntohs(value.port)
      row.flags = flag_names(value.flags, BACKEND_FLAGS)
      return row
    end,
  },
  map_affinity = {
    columns = { "netnsCookie", "type", "address", "port", "protocol", "backend", "backendPort", "slot", "expiresIn" },
    decode = function(k, v, now_ns)
      local key, value = as("struct affinity_key", k), as("struct affinity_value", v)
      local row = frontend_fields({ netnsCookie = tostring(key.netns_cookie):gsub("ULL$", "") }, key.frontend)
      row.backend = address(value.address)
      row.backendPort = abi.ntohs(value.port)
      row.slot = tonumber(value.slot)
      local left = now_ns and (tonumber(value.expires_ns) - now_ns) / 1e9
      row.expiresIn = left and (left > 0 and string.format("%ds", math.floor(left)) or "expired") or "?"
      return row
    end,
  },
  map_nat_record = {
    columns = NAT_RECORD_COLUMNS,
    decode = function(k, v)
      return nat_record_row(as("struct nat_record_key", k), as("struct nat_record_value", v))
    end,
  },
  -- TCP's records, one slot per socket cookie: only the slots a connect
  -- filled (socket cookie not 0), picked out in C (of 262,144 by default)
  map_nat_record_tcp = {
    columns = NAT_RECORD_COLUMNS,
    dump = { nonzero = { offset = ffi.offsetof("struct nat_record_tcp", "key"), size = 8 } },
    decode = function(_, v)
      local slot = as("struct nat_record_tcp", v)
      return nat_record_row(slot.key, slot.value)
    end,
  },
  map_node_ip = {
    columns = { "address", "nodeId" },
    decode = function(k, v)
      return { address = address(as("struct node_ip_key", k).address),
        nodeId = tonumber(as("struct node_ip_value", v).node_id) }
    end,
  },
  map_node_proxy_ip = {
    columns = { "nodeId", "proxyIp" },
    decode = function(k, v)
      return { nodeId = tonumber(as("struct node_proxy_ip_key", k).node_id),
        proxyIp = address(as("struct node_proxy_ip_value", v).address) }
    end,
  },
  map_configure = {
    columns = { "abiVersion", "bpfLogLevel", "redirectQosLimit", "nodeId", "events" },
    decode = function(_, v)
      local value = as("struct configure_value", v)
      return { abiVersion = tonumber(value.abi_version),
        bpfLogLevel = LOG_LEVEL_NAMES[tonumber(value.bpf_log_level)] or tostring(value.bpf_log_level),
        redirectQosLimit = tonumber(value.redirect_qos_limit), nodeId = tonumber(value.node_id),
        events = EVENTS_NAMES[tonumber(value.events)] or tostring(value.events) }
    end,
  },
}

pcall(ffi.cdef, "struct timespec { long tv_sec; long tv_nsec; };")
pcall(ffi.cdef, "int clock_gettime(int clock_id, struct timespec *tp);")
local CLOCK_MONOTONIC = 1 -- the clock of bpf_ktime_get_ns()

local function monotonic_ns()
  local ts = ffi.new("struct timespec")
  if ffi.C.clock_gettime(CLOCK_MONOTONIC, ts) ~= 0 then
    return nil
  end
  return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
end

-- rows(handles, name) → the decoded rows of one map, in a stable order (by
-- their columns), or nil, err.
function M.rows(handles, name)
  local map, spec = handles[name], M.MAPS[name]
  if not map then
    return nil, name .. " is not pinned"
  end
  local entries, err = map:dump(spec.dump)
  if not entries then
    return nil, err
  end
  local now_ns = monotonic_ns()
  local rows = {}
  for i, entry in ipairs(entries) do
    rows[i] = spec.decode(entry.key, entry.value, now_ns)
  end
  local columns = spec.columns
  table.sort(rows, function(a, b)
    for _, column in ipairs(columns) do
      local x, y = a[column], b[column]
      if x ~= y then
        if type(x) == type(y) then
          return x < y
        end
        return tostring(x) < tostring(y)
      end
    end
    return false
  end)
  return rows
end

-- frontend_view(handles, ids) → the frontend view of the maps (frontends.lua):
-- every map_service entry with the map_backend slots it can resolve to.
function M.frontend_view(handles, ids)
  for _, name in ipairs({ "map_service", "map_backend" }) do
    if not handles[name] then
      return nil, name .. " is not pinned"
    end
  end
  local services, err = handles.map_service:dump()
  if not services then
    return nil, err
  end
  local slots
  slots, err = handles.map_backend:dump()
  if not slots then
    return nil, err
  end
  local by_frontend = {}
  for _, entry in ipairs(slots) do
    local key = as("struct backend_key", entry.key)
    local frontend = ffi.string(key.frontend, ffi.sizeof("struct service_key"))
    by_frontend[frontend] = by_frontend[frontend] or {}
    by_frontend[frontend][tonumber(key.slot) + 1] = as("struct backend_value", entry.value)
  end
  local list = {}
  for _, entry in ipairs(services) do
    local key = as("struct service_key", entry.key)
    -- the slots from 0 up to the first one missing: what the datapath can
    -- pick (a missing slot below the count fails a connect, reason
    -- "backend slot missing")
    local found, backends = by_frontend[ffi.string(key, ffi.sizeof(key))] or {}, {}
    while found[#backends + 1] do
      backends[#backends + 1] = found[#backends + 1]
    end
    list[#list + 1] = { key = key, value = as("struct service_value", entry.value), backends = backends }
  end
  return frontends.from_entries({ { owner = "", frontends = list } }, ids)
end

return M
