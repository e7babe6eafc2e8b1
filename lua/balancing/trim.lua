-- Objects trimmed to what the agent reads, before they enter the store, as
-- client-go's informers do with transform functions (SetTransform): real
-- objects carry managedFields, the last-applied annotation, container specs
-- and node images that are many times the size of what reconciliation and
-- event enrichment read, and the store keeps every object for its life.
--
--   obj = trim.object(obj)   -- the same table, trimmed in place
--
-- What is kept, per kind (everything else is dropped):
--   every kind   apiVersion, kind, metadata without managedFields, the
--                kubectl last-applied annotation, ownerReferences and
--                finalizers (identity, labels, annotations, resourceVersion,
--                uid, creationTimestamp, deletionTimestamp stay)
--   Service      spec without selector (endpoints come from EndpointSlices);
--                status.loadBalancer
--   EndpointSlice  addressType, ports, endpoints (addresses, conditions,
--                nodeName, zone, hints) — each endpoint a fresh table of
--                just those, and equal conditions one shared table: there
--                are 100,000 endpoints in a large cluster (580 → 324 bytes
--                each); of its labels only those kube-proxy reads (the
--                Service's name, service-proxy-name, headless: the rest are
--                copies of the Service's), and no annotations
--   Node         status.addresses
--   Pod          spec.nodeName and spec.hostNetwork; status.phase,
--                conditions, podIP, podIPs, and each container status's
--                name and containerID (the events name a client's container)
--   policies     spec (small, and all of it is read)
-- An object of another kind is returned as it is.
local object = require("balancing.object")
local service_spec = require("balancing.service_spec")

local M = {}

M.LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

local present = object.present

-- Keeps only the listed fields of t (a table), in place.
local function keep_only(t, fields)
  if type(t) ~= "table" then
    return
  end
  for key in pairs(t) do
    if not fields[key] then
      t[key] = nil
    end
  end
end

local TOP = { apiVersion = true, kind = true, metadata = true, spec = true, status = true,
  -- EndpointSlice keeps its data at the top level
  addressType = true, ports = true, endpoints = true }

local function trim_metadata(obj)
  local metadata = present(obj.metadata)
  if type(metadata) ~= "table" then
    return
  end
  metadata.managedFields = nil
  metadata.ownerReferences = nil
  metadata.finalizers = nil
  local annotations = present(metadata.annotations)
  if type(annotations) == "table" then
    annotations[M.LAST_APPLIED_ANNOTATION] = nil
  end
end

local POD_SPEC = { nodeName = true, hostNetwork = true }
local POD_STATUS = { phase = true, conditions = true, podIP = true, podIPs = true, containerStatuses = true }
local CONTAINER_STATUS = { name = true, containerID = true }
local NODE_STATUS = { addresses = true }
local SERVICE_STATUS = { loadBalancer = true }

local by_kind = {}

by_kind.Service = function(obj)
  local spec = present(obj.spec)
  if type(spec) == "table" then
    spec.selector = nil
  end
  keep_only(present(obj.status), SERVICE_STATUS)
end

-- An endpoint's conditions are one of a few combinations of three booleans:
-- the same combination is one table, shared (objects in the store are read,
-- never changed). Anything else (a null, another field) stays as it came.
local CONDITION_NAMES = { "ready", "serving", "terminating" }
local shared_conditions = {}

local function condition_code(value)
  if value == nil then
    return 0
  end
  return value and 1 or 2
end

local function share_conditions(conditions)
  if type(conditions) ~= "table" then
    return conditions
  end
  local count = 0
  for key, value in pairs(conditions) do
    if type(value) ~= "boolean" or (key ~= "ready" and key ~= "serving" and key ~= "terminating") then
      return conditions
    end
    count = count + 1
  end
  local code = condition_code(conditions.ready) + 3 * condition_code(conditions.serving)
    + 9 * condition_code(conditions.terminating)
  local shared = shared_conditions[code]
  if not shared then
    shared = {}
    for _, name in ipairs(CONDITION_NAMES) do
      shared[name] = conditions[name]
    end
    shared_conditions[code] = shared
  end
  return count > 0 and shared or conditions
end

-- A fresh table of the kept fields: one that only lost fields keeps the
-- room of all it had (a table never shrinks), and endpoints are many.
local function compact_endpoint(endpoint)
  if type(endpoint) ~= "table" then
    return endpoint
  end
  local out = { addresses = endpoint.addresses, conditions = share_conditions(endpoint.conditions),
    nodeName = endpoint.nodeName, zone = endpoint.zone }
  if endpoint.hints ~= nil then
    out.hints = endpoint.hints
  end
  return out
end

-- The labels of an EndpointSlice that say which Service it serves and who
-- proxies it (API.md "Service").
local SLICE_LABELS = { [require("balancing.store").SERVICE_NAME_LABEL] = true,
  [service_spec.PROXY_NAME_LABEL] = true, [service_spec.HEADLESS_LABEL] = true }

by_kind.EndpointSlice = function(obj)
  obj.spec, obj.status = nil, nil
  local metadata = present(obj.metadata)
  if type(metadata) == "table" then
    metadata.annotations = nil
    keep_only(present(metadata.labels), SLICE_LABELS)
  end
  local endpoints = present(obj.endpoints)
  if type(endpoints) == "table" then
    for i, endpoint in ipairs(endpoints) do
      endpoints[i] = compact_endpoint(endpoint)
    end
  end
end

by_kind.Node = function(obj)
  obj.spec = nil
  keep_only(present(obj.status), NODE_STATUS)
end

by_kind.Pod = function(obj)
  keep_only(present(obj.spec), POD_SPEC)
  local status = present(obj.status)
  keep_only(status, POD_STATUS)
  local statuses = type(status) == "table" and present(status.containerStatuses)
  if type(statuses) == "table" then
    for _, container in ipairs(statuses) do
      keep_only(container, CONTAINER_STATUS)
    end
  end
end

by_kind.LocalRedirectPolicy = function(obj)
  obj.status = nil
end
by_kind.BalancingPolicy = by_kind.LocalRedirectPolicy

-- object(obj) → obj, trimmed in place (see the top of this file).
function M.object(obj)
  if type(obj) ~= "table" then
    return obj
  end
  local trim_kind = by_kind[present(obj.kind)]
  if not trim_kind then
    return obj
  end
  keep_only(obj, TOP)
  trim_metadata(obj)
  trim_kind(obj)
  return obj
end

return M
