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
--                nodeName, zone, hints)
--   Node         status.addresses
--   Pod          spec.nodeName and spec.hostNetwork; status.phase,
--                conditions, podIP, podIPs, and each container status's
--                name and containerID (the events name a client's container)
--   policies     spec (small, and all of it is read)
-- An object of another kind is returned as it is.
local object = require("balancing.object")

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

local ENDPOINT = { addresses = true, conditions = true, nodeName = true, zone = true, hints = true }
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

by_kind.EndpointSlice = function(obj)
  obj.spec, obj.status = nil, nil
  local endpoints = present(obj.endpoints)
  if type(endpoints) == "table" then
    for _, endpoint in ipairs(endpoints) do
      keep_only(endpoint, ENDPOINT)
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
