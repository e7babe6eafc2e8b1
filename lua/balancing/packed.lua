-- Objects kept as text: the store holds its Services and EndpointSlices —
-- 20,000 objects and 100,000 endpoints in a large cluster — as one string
-- each rather than as decoded tables, and decodes one when it is read. A
-- Lua table costs its header, its hash part and a string or table per
-- field; the text of a trimmed Service is 0.9 KB, and an endpoint packed as
-- below about 30 bytes (a decoded, trimmed one: 324). A string is also
-- one object for the collector, which never looks inside it.
--
--   local text = packed.pack(obj)        -- nil when obj cannot be kept as text
--   local obj = packed.unpack(text)      -- a fresh table equal to obj
--
-- The text is the object's JSON (lua-cjson), except that an EndpointSlice's
-- endpoints are one string, an endpoint a line of tab-separated fields: the
-- addresses joined by ",", the conditions as one letter, nodeName, zone (""
-- when absent). Only endpoints of just those fields, of the usual types and
-- without a separator in a value, are written this way; a slice with any
-- other (hints, a null, another field) keeps its endpoints as JSON. A slice
-- whose endpoints field is a string already (never valid) is not packed.
-- Unpacked objects are fresh tables, but equal conditions are one shared
-- table, as balancing.trim makes them: objects in the store are read, never
-- changed.
local cjson = require("cjson").new()
local is_list = require("balancing.object").is_list

local M = {}

-- "/" is written as it is (lua-cjson 2.1.0 would write "\/" where the
-- version has the switch): labels and API versions are full of them.
if cjson.encode_escape_forward_slash then
  cjson.encode_escape_forward_slash(false)
end
-- (numbers keep lua-cjson's 14 significant digits: what the objects hold as
-- numbers — ports, generations, seconds — is far smaller; resourceVersion
-- and the IDs are text)

-- An endpoint's conditions: each of ready, serving, terminating absent, true
-- or false — 27 combinations, one letter each ("A" + code).
local CONDITION_NAMES = { "ready", "serving", "terminating" }
local BASE = string.byte("A")
local shared_conditions = {}
for code = 0, 26 do
  local conditions, rest = {}, code
  for _, name in ipairs(CONDITION_NAMES) do
    local digit = rest % 3
    rest = (rest - digit) / 3
    if digit == 1 then
      conditions[name] = true
    elseif digit == 2 then
      conditions[name] = false
    end
  end
  shared_conditions[code] = conditions
end

local CONDITION_DIGIT = { [true] = 1, [false] = 2 }

-- The letter of a conditions table, or nil when it holds anything else.
local function condition_letter(conditions)
  if type(conditions) ~= "table" then
    return nil
  end
  local code, weight = 0, 1
  for _, name in ipairs(CONDITION_NAMES) do
    local value = conditions[name]
    if value ~= nil then
      local digit = CONDITION_DIGIT[value]
      if not digit then
        return nil
      end
      code = code + digit * weight
    end
    weight = weight * 3
  end
  for key in pairs(conditions) do
    if key ~= "ready" and key ~= "serving" and key ~= "terminating" then
      return nil
    end
  end
  return string.char(BASE + code)
end

-- A value a field may hold: absent, or text without a separator (an empty
-- text would read back as absent).
local function plain_text(value)
  return value == nil or (type(value) == "string" and value ~= "" and not value:find("[,\t\n]"))
end

local ENDPOINT_FIELDS = { addresses = true, conditions = true, nodeName = true, zone = true }

-- One endpoint's line, or nil when it cannot be written as one.
local function endpoint_line(endpoint)
  if type(endpoint) ~= "table" then
    return nil
  end
  for key in pairs(endpoint) do
    if not ENDPOINT_FIELDS[key] then
      return nil
    end
  end
  local addresses = endpoint.addresses
  if not is_list(addresses) or #addresses == 0 then
    return nil
  end
  for _, address in ipairs(addresses) do
    if address == nil or not plain_text(address) then
      return nil
    end
  end
  local letter = condition_letter(endpoint.conditions)
  if endpoint.conditions == nil then
    letter = "-"
  end
  if not letter or not plain_text(endpoint.nodeName) or not plain_text(endpoint.zone) then
    return nil
  end
  return table.concat(addresses, ",") .. "\t" .. letter .. "\t" .. (endpoint.nodeName or "") .. "\t"
    .. (endpoint.zone or "")
end

-- The endpoints as lines, or nil when one of them cannot be.
local function pack_endpoints(endpoints)
  if not is_list(endpoints) or #endpoints == 0 then
    return nil
  end
  local lines = {}
  for i, endpoint in ipairs(endpoints) do
    local line = endpoint_line(endpoint)
    if not line then
      return nil
    end
    lines[i] = line
  end
  return table.concat(lines, "\n")
end

local function split_addresses(text)
  local out, at = {}, 1
  while true do
    local comma = text:find(",", at, true)
    out[#out + 1] = text:sub(at, (comma or 0) - 1)
    if not comma then
      return out
    end
    at = comma + 1
  end
end

local function unpack_endpoints(text)
  local endpoints, at = {}, 1
  local length = #text
  while at <= length do
    local line_end = text:find("\n", at, true) or length + 1
    local tab1 = text:find("\t", at, true)
    local tab2 = text:find("\t", tab1 + 1, true)
    local tab3 = text:find("\t", tab2 + 1, true)
    local endpoint = { addresses = split_addresses(text:sub(at, tab1 - 1)) }
    local letter = text:byte(tab1 + 1)
    if letter ~= 45 then -- "-": no conditions
      endpoint.conditions = shared_conditions[letter - BASE]
    end
    if tab3 > tab2 + 1 then
      endpoint.nodeName = text:sub(tab2 + 1, tab3 - 1)
    end
    if line_end > tab3 + 1 then
      endpoint.zone = text:sub(tab3 + 1, line_end - 1)
    end
    endpoints[#endpoints + 1] = endpoint
    at = line_end + 1
  end
  return endpoints
end

-- pack(obj) → text, or nil when obj cannot be written as JSON (a table
-- lua-cjson refuses: a function, a cycle, a sparse array), and for an
-- EndpointSlice whose endpoints field is a string (unpack would read it as
-- packed endpoints): the caller keeps such an object as it is.
function M.pack(obj)
  if type(obj) ~= "table" then
    return nil
  end
  local slice = obj.kind == "EndpointSlice"
  if slice and type(obj.endpoints) == "string" then
    return nil
  end
  local lines = slice and pack_endpoints(obj.endpoints)
  if lines then
    local endpoints = obj.endpoints
    obj.endpoints = lines
    local ok, text = pcall(cjson.encode, obj)
    obj.endpoints = endpoints
    return ok and text or nil
  end
  local ok, text = pcall(cjson.encode, obj)
  return ok and text or nil
end

-- DICTIONARY: what the store's text arena deflates each text against
-- (core/text_codec.h). A text alone is about a kilobyte, too short for
-- deflate to find much to share within it; most of it is what every
-- Service or EndpointSlice repeats — field names, the usual values, the
-- labels and annotations Helm and the EndpointSlice controller write —
-- which this gives it to refer to. Generic Kubernetes objects, encoded as
-- pack encodes them (escapes included) so that they match byte for byte:
-- nothing in it comes from any one cluster. Deflate refers to what is
-- nearer the text more cheaply, so the Service, read most, comes last.
local function dictionary_object(metadata, rest)
  rest.metadata = metadata
  return cjson.encode(rest)
end

M.DICTIONARY = table.concat({
  dictionary_object({ name = "app-abcde", generateName = "app-", generation = 1, namespace = "default",
    uid = "00000000-0000-0000-0000-000000000000", resourceVersion = "1000",
    creationTimestamp = "2026-01-01T00:00:00Z",
    labels = { ["kubernetes.io/service-name"] = "app",
      ["endpointslice.kubernetes.io/managed-by"] = "endpointslice-controller.k8s.io",
      ["service.kubernetes.io/headless"] = "", ["service.kubernetes.io/service-proxy-name"] = "" } },
    { apiVersion = "discovery.k8s.io/v1", kind = "EndpointSlice", addressType = "IPv4",
      ports = { { name = "http", port = 8080, protocol = "TCP", appProtocol = "http" },
        { name = "https", port = 8443, protocol = "TCP" }, { name = "metrics", port = 9090, protocol = "TCP" },
        { name = "dns", port = 53, protocol = "UDP" }, { name = "dns-tcp", port = 53, protocol = "TCP" } },
      endpoints = "10.0.0.1\tW\tnode-1\tzone-a\n10.0.0.2\tW\tnode-2\tzone-b\n" }),
  dictionary_object({ name = "app", namespace = "default", uid = "00000000-0000-0000-0000-000000000000",
    resourceVersion = "1000", creationTimestamp = "2026-01-01T00:00:00Z",
    labels = { app = "app", ["k8s-app"] = "app", ["app.kubernetes.io/name"] = "app",
      ["app.kubernetes.io/instance"] = "app", ["app.kubernetes.io/version"] = "1.0.0",
      ["app.kubernetes.io/component"] = "server", ["app.kubernetes.io/part-of"] = "app",
      ["app.kubernetes.io/managed-by"] = "Helm", ["helm.sh/chart"] = "app-1.0.0" },
    annotations = { ["meta.helm.sh/release-name"] = "app", ["meta.helm.sh/release-namespace"] = "default",
      ["balancing.elf.io/serviceId"] = "1" } },
    { apiVersion = "v1", kind = "Service",
      spec = { type = "ClusterIP", clusterIP = "10.96.0.1", clusterIPs = { "10.96.0.1" },
        ipFamilies = { "IPv4" }, ipFamilyPolicy = "SingleStack", internalTrafficPolicy = "Cluster",
        externalTrafficPolicy = "Cluster", sessionAffinity = "None", allocateLoadBalancerNodePorts = true,
        sessionAffinityConfig = { clientIP = { timeoutSeconds = 10800 } },
        ports = { { name = "http", protocol = "TCP", port = 80, targetPort = "http", nodePort = 30080 },
          { name = "https", protocol = "TCP", port = 443, targetPort = 8443 },
          { name = "metrics", protocol = "TCP", port = 9090, targetPort = 9090 } } },
      status = { loadBalancer = { ingress = { { ip = "192.0.2.1", ipMode = "VIP" } } } } }),
  -- the shortest Service status, nearly every Service's
  '"status":{"loadBalancer":{}}',
})

-- unpack(text) → the object pack was given (a fresh table).
function M.unpack(text)
  local obj = cjson.decode(text)
  if obj.kind == "EndpointSlice" and type(obj.endpoints) == "string" then
    obj.endpoints = unpack_endpoints(obj.endpoints)
  end
  return obj
end

return M
