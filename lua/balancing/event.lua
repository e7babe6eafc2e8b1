-- One translation event, enriched and formatted: the fields of CONTRACTS.md
-- ("Logs": a line whose msg is "formatted ebpf event") from an event the C
-- reader decoded (core/events.c: events_decode) — the client pod from the
-- process's cgroup, the Service or policy from the service ID.
--
--   local formatter = event.new{ store = store, node_name = "node-1" }
--   local fields = formatter:fields(decoded)
--   log.info(event.MESSAGE, fields)
--
-- The client: pid → /proc/PID/cgroup → the pod UID and container ID in the
-- cgroup v2 path, in either layout kubelet makes (cgroup_path below) → the
-- Pod in the store. The cgroup is read once per cgroup ID (the kernel gives
-- it in the event; IDs are not reused while the system runs), so a flood of
-- events costs one file read per client cgroup, and a process that exited
-- before its event was read is still named when its cgroup was seen before.
local cjson = require("cjson")
local abi = require("balancing.abi")
local log = require("balancing.log")
local object = require("balancing.object")

local M = {}

M.MESSAGE = "formatted ebpf event"

-- The cgroup cache is dropped whole past this many cgroups (pods come and go;
-- a bounded table, no eviction order to keep).
local MAX_CACHED_CGROUPS = 16384

local Formatter = {}
Formatter.__index = Formatter

local present = object.present

-- The pod UID and the container ID in a cgroup v2 path, or nil when the path
-- is no pod's (a host process: isHostApp). kubelet's two layouts:
--   systemd   /kubepods.slice/kubepods-burstable.slice/
--             kubepods-burstable-pod<uid with _ for ->.slice/cri-containerd-<id>.scope
--             (or docker-<id>.scope, crio-<id>.scope)
--   cgroupfs  /kubepods/burstable/pod<uid>/<id>
-- A path seen from inside a cgroup namespace may start elsewhere: the pod's
-- part is searched for anywhere in it. The container ID is the 64 hex digits
-- as the cgroup names them, without the runtime's prefix; nil for a process
-- in the pod's own cgroup.
function M.cgroup_path(path)
  if type(path) ~= "string" then
    return nil
  end
  local uid, rest = path:match("kubepods[%w_-]*%-pod([%x_]+)%.slice(.*)$")
  if uid then
    uid = uid:gsub("_", "-")
  else
    uid, rest = path:match("/pod(%x%x%x%x%x%x%x%x%-[%x-]+)(.*)$")
  end
  if not uid then
    return nil
  end
  local container = rest and (rest:match("^/[%w%-]-%-(%x+)%.scope") or rest:match("^/(%x+)$")
    or rest:match("^/(%x+)/"))
  if container and #container ~= 64 then
    container = nil
  end
  return uid, container
end

-- The cgroup v2 path in the text of /proc/PID/cgroup ("0::/path"), also on a
-- hybrid host where the v1 controllers' lines come first.
function M.unified_path(text)
  if type(text) ~= "string" then
    return nil
  end
  return text:match("^0::([^\n]*)") or text:match("\n0::([^\n]*)")
end

local function read_proc_cgroup(pid)
  local file = io.open("/proc/" .. tostring(pid) .. "/cgroup", "r")
  if not file then
    return nil
  end
  local text = file:read("*a")
  file:close()
  return text
end

-- new{ store, node_name[, read_cgroup = function(pid) → text | nil]
--      [, cgroup_path = function(cgroup_id) → path | nil] }: cgroup_path
-- names the cgroup of a process that exited before its event was read (the
-- agent indexes the cgroups it knows by ID).
function M.new(opts)
  return setmetatable({
    store = assert(opts.store, "event.new: store is required"),
    node_name = opts.node_name or "",
    read_cgroup = opts.read_cgroup or read_proc_cgroup,
    cgroup_path_of_id = opts.cgroup_path,
    cgroups = {}, -- cgroup ID → { uid, container } | false (no pod's)
    cached = 0,
  }, Formatter)
end

-- { uid, container } for the event's client, false for a host process, nil
-- when its cgroup cannot be told (the process is gone and its cgroup unseen).
function Formatter:client(ev)
  local key = ev.cgroup_id
  local known = key and self.cgroups[key]
  if known ~= nil then
    return known
  end
  local path = M.unified_path(self.read_cgroup(ev.pid))
  if not path and self.cgroup_path_of_id and key then
    path = self.cgroup_path_of_id(key)
  end
  if not path then
    return nil
  end
  local uid, container = M.cgroup_path(path)
  known = uid and { uid = uid, container = container } or false
  if key then
    if self.cached >= MAX_CACHED_CGROUPS then
      self.cgroups, self.cached = {}, 0
    end
    self.cgroups[key] = known
    self.cached = self.cached + 1
  end
  return known
end

-- RFC 3339 with milliseconds (log.timestamp makes the date part once per
-- second)
local rfc3339 = log.timestamp

local function split_time(time)
  local seconds = math.floor(time)
  return seconds, math.floor((time - seconds) * 1000)
end

-- fields(ev) → the table of CONTRACTS.md's fields for one decoded event.
function Formatter:fields(ev)
  local client = self:client(ev)
  local pod = client and self.store:pod_by_uid(client.uid)
  local metadata = pod and pod.metadata
  return {
    timestamp = rfc3339(split_time(ev.time or 0)),
    nodeName = self.node_name,
    protocol = ev.protocol_name or abi.protocol_name(ev.protocol),
    isIpv4 = ev.is_ipv4 == true,
    isSuccess = ev.success == true,
    failure = abi.reason_names[ev.reason] or tostring(ev.reason),
    destIp = ev.original_address or "",
    destPort = ev.original_port or 0,
    natIp = ev.nat_address or "",
    natPort = ev.nat_port or 0,
    natType = abi.nat_type_names[ev.nat_type] or tostring(ev.nat_type),
    natMode = abi.nat_mode_names[ev.nat_mode] or tostring(ev.nat_mode),
    serviceId = ev.service_id or 0,
    policyName = self.store.ids and self.store.ids:owner_name(ev.service_id) or "",
    clientPid = ev.pid or 0,
    clientPodName = metadata and present(metadata.name) or "",
    clientNamespace = metadata and present(metadata.namespace) or "",
    clientPodUid = client and client.uid or "",
    clientContainerId = client and client.container or "",
    isHostApp = client == false,
    redirectHitLimit = ev.redirect_hit_limit == true,
  }
end

-- The JSON line ---------------------------------------------------------------

-- A string as JSON: as it is between quotes when nothing in it needs an
-- escape (addresses, names, IDs: nearly always), else through lua-cjson
-- (without its "\/" for every slash).
-- The texts of an event repeat (addresses, pod and Service names, the node):
-- each is encoded once and kept, up to a bound (then the memo starts over).
local MAX_ENCODED = 65536
local encoded, encoded_count = {}, 0
local function json_string(text)
  local done = encoded[text]
  if done then
    return done
  end
  text = tostring(text)
  if not text:find('[%c"\\/\128-\255]') then
    done = '"' .. text .. '"'
  else
    done = (cjson.encode(text):gsub("\\/", "/"))
  end
  if encoded_count >= MAX_ENCODED then
    encoded, encoded_count = {}, 0
  end
  encoded[text] = done
  encoded_count = encoded_count + 1
  return done
end

local function json_bool(value)
  return value and "true" or "false"
end

-- line(ev[, now]) → the whole JSON log line (without its newline) of one
-- event, as log.info(event.MESSAGE, fields(ev)) writes it but in the
-- contract's field order, made without a table of fields, a sort or an
-- encoder call per field: a flood of events is formatted at this rate
-- (scripts/bench/events). now is the line's "time" (default: the clock).
local format = string.format
function Formatter:line(ev, now)
  local f = self:fields(ev)
  local time_text = now and rfc3339(split_time(now)) or log.timestamp()
  return table.concat({
    '{"time":"', time_text, '","level":"info","msg":"', M.MESSAGE,
    '","timestamp":"', f.timestamp,
    '","nodeName":', json_string(f.nodeName),
    ',"protocol":', json_string(f.protocol),
    ',"isIpv4":', json_bool(f.isIpv4),
    ',"isSuccess":', json_bool(f.isSuccess),
    ',"failure":', json_string(f.failure),
    ',"destIp":', json_string(f.destIp),
    ',"destPort":', format("%d", f.destPort),
    ',"natIp":', json_string(f.natIp),
    ',"natPort":', format("%d", f.natPort),
    ',"natType":', json_string(f.natType),
    ',"natMode":', json_string(f.natMode),
    ',"serviceId":', format("%d", f.serviceId),
    ',"policyName":', json_string(f.policyName),
    ',"clientPid":', format("%d", f.clientPid),
    ',"clientPodName":', json_string(f.clientPodName),
    ',"clientNamespace":', json_string(f.clientNamespace),
    ',"clientPodUid":', json_string(f.clientPodUid),
    ',"clientContainerId":', json_string(f.clientContainerId),
    ',"isHostApp":', json_bool(f.isHostApp),
    ',"redirectHitLimit":', json_bool(f.redirectHitLimit),
    "}",
  })
end

M.Formatter = Formatter

return M
