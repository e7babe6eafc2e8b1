-- Reading decoded Kubernetes objects: the tables lua-cjson gives for the API
-- server's JSON, and the manifests, which manifests.lua makes the same tables.
--
--   local object = require("balancing.object")
--   object.present(spec.clusterIP)                      -- nil for nil and JSON null
--   object.field(pod, "metadata", "labels")             -- nil where a step is missing
--   object.name(slice)                                  -- "" when it has none
--
-- A JSON null is lua-cjson's cjson.null (a YAML null is turned into it too):
-- a field set to null is read as a field left out, as the API server reads
-- it. Nothing else is taken for null: a decoded object holds only tables,
-- strings, numbers, booleans and that one sentinel.
--
-- Every reconcile reads every Service and EndpointSlice through these, so
-- they make no tables and no closures (LuaJIT keeps them inside its traces).
local cjson = require("cjson")

local M = {}

local NULL = cjson.null

-- An empty metadata, shared (never written to).
local NO_METADATA = setmetatable({}, { __newindex = function()
  error("balancing.object: the empty metadata is read-only", 2)
end })

-- The value, or nil when it is absent (nil or JSON null).
local function present(value)
  if value == NULL then
    return nil
  end
  return value
end
M.present = present

function M.absent(value)
  return value == nil or value == NULL
end

-- field(t, k1, k2, ...) → t[k1][k2]..., or nil as soon as a step is absent
-- or not an object (a table).
function M.field(t, ...)
  local value = t
  for i = 1, select("#", ...) do
    if type(value) ~= "table" then
      return nil
    end
    value = present(value[select(i, ...)])
  end
  return value
end

-- Whether a value decodes from a JSON list: a table whose keys are 1..n
-- (an empty table is one; lua-cjson gives {} for both [] and {}).
function M.is_list(value)
  if type(value) ~= "table" then
    return false
  end
  local n = 0
  for _ in pairs(value) do
    n = n + 1
  end
  return n == #value
end

-- The object's metadata table, or an empty one (read-only) when the object
-- or its metadata is absent or not an object.
local function metadata(obj)
  local meta = type(obj) == "table" and obj.metadata
  if type(meta) ~= "table" then
    return NO_METADATA
  end
  return meta
end
M.metadata = metadata

-- metadata.name, or "" when it is absent.
function M.name(obj)
  return present(metadata(obj).name) or ""
end

-- The order the store lists objects in: by namespace ("" for a
-- cluster-scoped object), then name. Both must have metadata.name (the
-- store refuses objects without one).
function M.by_namespace_name(a, b)
  local ma, mb = a.metadata, b.metadata
  if ma.namespace ~= mb.namespace then
    return (present(ma.namespace) or "") < (present(mb.namespace) or "")
  end
  return ma.name < mb.name
end

-- older(a, b): whether object a is older than object b, the order in which
-- two objects claiming one thing (a frontend, a serviceId) win it:
-- creationTimestamp (RFC 3339 text compares in time order), then namespace,
-- name and kind. An object without a creationTimestamp (a manifest never seen
-- by an API server) counts as newer than any object that has one.
function M.older(a, b)
  local ma, mb = metadata(a), metadata(b)
  local ta, tb = present(ma.creationTimestamp), present(mb.creationTimestamp)
  if ta ~= tb then
    if ta == nil then
      return false
    end
    if tb == nil then
      return true
    end
    return tostring(ta) < tostring(tb)
  end
  for _, key in ipairs({ "namespace", "name" }) do
    local va, vb = tostring(present(ma[key]) or ""), tostring(present(mb[key]) or "")
    if va ~= vb then
      return va < vb
    end
  end
  return tostring(present(a.kind) or "") < tostring(present(b.kind) or "")
end

return M
