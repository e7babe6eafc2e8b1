-- What a valid LocalRedirectPolicy or BalancingPolicy spec is (API.md
-- "PortInfo", "LocalRedirectPolicy", "BalancingPolicy", "Both policies"),
-- checked once when the policy enters the store.
--
--   local spec, reason = policy_spec.parse("LocalRedirectPolicy", policy)
--
-- These are the rules deploy/crds/*.yaml give the API server as schema and
-- CEL, so that a manifest the API server never saw is held to them too;
-- policy_spec_spec.lua checks the CRDs' enums, defaults and bounds against
-- the tables here. The store indexes the checked spec and reconcile reads it;
-- neither reads the policy's spec fields again. Pure: no store, no I/O. The
-- result is shared by its readers and never modified.
--
-- Choices where API.md is silent (each has a spec in policy_spec_spec.lua):
--  * field paths in reasons count list positions from 0, as the API server
--    does (`spec.backend.toPorts[0].port`);
--  * a PortInfo without `protocol` means TCP, as a Service port does (the
--    CRDs default it);
--  * the address 0.0.0.0 is refused (address 0 is map_service's NodePort
--    wildcard); addresses are strict dotted IPv4, unlike a Service's, which
--    are read as kube-proxy reads them;
--  * with more than one port on either side of an addressMatcher, both sides
--    need names.
local abi = require("balancing.abi")
local object = require("balancing.object")
local selector = require("balancing.selector")

local M = {}

local KINDS = { LocalRedirectPolicy = true, BalancingPolicy = true }

M.PROTOCOLS = { TCP = true, UDP = true }
M.DEFAULT_PROTOCOL = "TCP"
M.REDIRECT_MODES = { podEndpoint = true, hostPort = true, nodeProxy = true }
M.DEFAULT_REDIRECT_MODE = "podEndpoint"
-- a DNS label's length, as for a Service port's name (in the CRD, the bound
-- also keeps the API server's cost estimate of its CEL rules low)
M.MAX_PORT_NAME_LENGTH = 63

local present, is_list = object.present, object.is_list

local function show(value)
  if type(value) == "string" then
    return string.format("%q", value)
  end
  if type(value) == "table" then
    return "an object or list"
  end
  return tostring(value)
end

-- A usable IPv4 address text, or nil, reason. 0.0.0.0 is refused: address 0
-- is the NodePort wildcard of map_service.
local function parse_ipv4(value, path)
  value = present(value)
  if value == nil or value == "" then
    return nil, path .. ": required"
  end
  if not abi.ipv4_to_u32(value) then
    return nil, string.format("%s: %s is not an IPv4 address", path, show(value))
  end
  if value == "0.0.0.0" then
    return nil, string.format("%s: %s is not a usable address", path, show(value))
  end
  return value
end

-- PortInfo.port is a decimal string of at most five digits whose value is
-- 1..65535, as the CRD's pattern and CEL rule say.
local function parse_port(value)
  if type(value) ~= "string" or not value:match("^%d%d?%d?%d?%d?$") then
    return nil
  end
  local number = tonumber(value)
  if number < 1 or number > 65535 then
    return nil
  end
  return number
end

local function parse_port_info(entry, path)
  if type(entry) ~= "table" then
    return nil, path .. ": must be an object {port, protocol, name}"
  end
  local text = present(entry.port)
  if text == nil then
    return nil, path .. ".port: required"
  end
  local port = parse_port(text)
  if not port then
    return nil, string.format("%s.port: %s is not a port (a decimal string \"1\"..\"65535\")",
      path, show(text))
  end
  local protocol = present(entry.protocol) or M.DEFAULT_PROTOCOL
  if not M.PROTOCOLS[protocol] then
    return nil, string.format("%s.protocol: %s is not TCP or UDP", path, show(protocol))
  end
  local name = present(entry.name)
  if name ~= nil and type(name) ~= "string" then
    return nil, string.format("%s.name: %s is not a string", path, show(name))
  end
  if name and #name > M.MAX_PORT_NAME_LENGTH then
    return nil, string.format("%s.name: %s is longer than %d characters", path, show(name),
      M.MAX_PORT_NAME_LENGTH)
  end
  if name == "" then
    name = nil
  end
  return { port = port, protocol = protocol, name = name }
end

-- A list of PortInfo. With more than one port every port needs a name (the
-- names map frontend ports to backend ports), and a name is used once.
local function parse_port_list(list, path, required)
  list = present(list)
  if list == nil or (type(list) == "table" and next(list) == nil) then
    if required then
      return nil, path .. ": at least one port is required"
    end
    return {}
  end
  if not is_list(list) then
    return nil, path .. ": must be a list of {port, protocol, name}"
  end
  local ports, names = {}, {}
  for i, entry in ipairs(list) do
    local where = string.format("%s[%d]", path, i - 1)
    local port, err = parse_port_info(entry, where)
    if not port then
      return nil, err
    end
    if #list > 1 and not port.name then
      return nil, where .. ".name: required when more than one port is listed"
    end
    if port.name then
      if names[port.name] then
        return nil, string.format("%s.name: %s is used by %s too", where, show(port.name), names[port.name])
      end
      names[port.name] = where
    end
    port.path = where
    ports[i] = port
  end
  return ports
end

-- selector.compile names the part at fault relative to the selector, with
-- list positions from 0 like every field path here ("matchExpressions[0]
-- .operator: ..."); it joins the policy's field path as a sub-field, or
-- after a colon when it is about the selector itself ("missing").
local function parse_selector(spec, path)
  local compiled, err = selector.compile(present(spec))
  if not compiled then
    if err:match("^match") then
      return nil, path .. "." .. err
    end
    return nil, path .. ": " .. err
  end
  return compiled
end

local function exactly_one(parent, path, a, b)
  local has_a, has_b = present(parent[a]) ~= nil, present(parent[b]) ~= nil
  if has_a and has_b then
    return nil, string.format("%s: exactly one of %s and %s, not both", path, a, b)
  end
  if not has_a and not has_b then
    return nil, string.format("%s: exactly one of %s and %s is required", path, a, b)
  end
  return has_a and a or b
end

local function parse_object(value, path)
  value = present(value)
  if value == nil then
    return nil, path .. ": required"
  end
  if type(value) ~= "table" or (next(value) ~= nil and is_list(value)) then
    return nil, path .. ": must be an object"
  end
  return value
end

local function parse_frontend(spec)
  local frontend, err = parse_object(spec.frontend, "spec.frontend")
  if not frontend then
    return nil, err
  end
  local which
  which, err = exactly_one(frontend, "spec.frontend", "serviceMatcher", "addressMatcher")
  if not which then
    return nil, err
  end
  local path = "spec.frontend." .. which
  local matcher
  matcher, err = parse_object(frontend[which], path)
  if not matcher then
    return nil, err
  end
  if which == "serviceMatcher" then
    for _, key in ipairs({ "namespace", "serviceName" }) do
      local value = present(matcher[key])
      if type(value) ~= "string" or value == "" then
        return nil, string.format("%s.%s: required (a string)", path, key)
      end
    end
    local ports
    ports, err = parse_port_list(matcher.toPorts, path .. ".toPorts", false)
    if not ports then
      return nil, err
    end
    return { mode = "service", namespace = matcher.namespace, service_name = matcher.serviceName,
      ports = ports }
  end
  local ip
  ip, err = parse_ipv4(matcher.ip, path .. ".ip")
  if not ip then
    return nil, err
  end
  local ports
  ports, err = parse_port_list(matcher.toPorts, path .. ".toPorts", true)
  if not ports then
    return nil, err
  end
  return { mode = "address", ip = ip, ports = ports }
end

local function parse_endpoint_selector(backend, path)
  if present(backend.endpointSelector) == nil then
    return nil, path .. ".endpointSelector: required"
  end
  return parse_selector(backend.endpointSelector, path .. ".endpointSelector")
end

local function parse_local_redirect_backend(spec)
  local backend, err = parse_object(spec.backend, "spec.backend")
  if not backend then
    return nil, err
  end
  local compiled
  compiled, err = parse_endpoint_selector(backend, "spec.backend")
  if not compiled then
    return nil, err
  end
  local ports
  ports, err = parse_port_list(backend.toPorts, "spec.backend.toPorts", true)
  if not ports then
    return nil, err
  end
  return { selector = compiled, ports = ports }
end

local function parse_balancing_backend(spec)
  local backend, err = parse_object(spec.backend, "spec.backend")
  if not backend then
    return nil, err
  end
  local which
  which, err = exactly_one(backend, "spec.backend", "serviceEndpoint", "addressEndpoint")
  if not which then
    return nil, err
  end
  local path = "spec.backend." .. which
  local endpoint
  endpoint, err = parse_object(backend[which], path)
  if not endpoint then
    return nil, err
  end
  local ports
  ports, err = parse_port_list(endpoint.toPorts, path .. ".toPorts", true)
  if not ports then
    return nil, err
  end
  if which == "serviceEndpoint" then
    local compiled
    compiled, err = parse_endpoint_selector(endpoint, path)
    if not compiled then
      return nil, err
    end
    -- the API server defaults only a missing field, so "" is refused, as the
    -- CRD's enum refuses it
    local mode = present(endpoint.redirectMode) or M.DEFAULT_REDIRECT_MODE
    if not M.REDIRECT_MODES[mode] then
      return nil, string.format("%s.redirectMode: %s is not podEndpoint, hostPort or nodeProxy",
        path, show(mode))
    end
    return { mode = mode, selector = compiled, ports = ports }
  end
  local list = present(endpoint.addresses)
  if list == nil or (type(list) == "table" and next(list) == nil) then
    return nil, path .. ".addresses: at least one address is required"
  end
  if not is_list(list) then
    return nil, path .. ".addresses: must be a list of IPv4 addresses"
  end
  local addresses = {}
  for i, value in ipairs(list) do
    local ip
    ip, err = parse_ipv4(value, string.format("%s.addresses[%d]", path, i - 1))
    if not ip then
      return nil, err
    end
    addresses[i] = ip
  end
  return { mode = "address", addresses = addresses, ports = ports }
end

-- With more than one port on either side of an addressMatcher, ports map by
-- name, so every port on both sides needs one. (A serviceMatcher's frontend
-- ports are the Service's, whose names Kubernetes already requires.)
local function check_port_names(frontend, backend)
  if frontend.mode ~= "address" or (#frontend.ports == 1 and #backend.ports == 1) then
    return true
  end
  for _, side in ipairs({ frontend.ports, backend.ports }) do
    for _, port in ipairs(side) do
      if not port.name then
        return nil, port.path .. ".name: required when more than one port is mapped"
      end
    end
  end
  return true
end

local function parse_config(spec, kind)
  local config = present(spec.config)
  local parsed = { enable_out_cluster = true }
  if config == nil then
    return parsed
  end
  if type(config) ~= "table" then
    return nil, "spec.config: must be an object"
  end
  if present(config.nodeLabelSelector) ~= nil then
    local compiled, err = parse_selector(config.nodeLabelSelector, "spec.config.nodeLabelSelector")
    if not compiled then
      return nil, err
    end
    parsed.node_selector = compiled
  end
  -- (a LocalRedirectPolicy has no enableOutCluster: its CRD prunes it)
  local enable = present(config.enableOutCluster)
  if kind == "BalancingPolicy" and enable ~= nil then
    if type(enable) ~= "boolean" then
      return nil, string.format("spec.config.enableOutCluster: %s is not true or false", show(enable))
    end
    parsed.enable_out_cluster = enable
  end
  return parsed
end

-- parse(kind, policy) → the checked spec, or nil, reason naming the field:
--   { frontend = { mode = "service", namespace, service_name, ports }
--              | { mode = "address", ip, ports },
--     backend  = { selector, ports, mode = nil (LocalRedirect) | "podEndpoint" | "hostPort"
--                  | "nodeProxy" } | { mode = "address", addresses, ports },
--     node_selector = compiled | nil, enable_out_cluster = boolean }
-- where each port is { port = number, protocol = "TCP"|"UDP", name = string|nil, path }.
function M.parse(kind, policy)
  assert(KINDS[kind], "unknown policy kind")
  local spec, err = parse_object(policy.spec, "spec")
  if not spec then
    return nil, err
  end
  local frontend, backend, config
  frontend, err = parse_frontend(spec)
  if not frontend then
    return nil, err
  end
  if kind == "LocalRedirectPolicy" then
    backend, err = parse_local_redirect_backend(spec)
  else
    backend, err = parse_balancing_backend(spec)
  end
  if not backend then
    return nil, err
  end
  local ok
  ok, err = check_port_names(frontend, backend)
  if not ok then
    return nil, err
  end
  config, err = parse_config(spec, kind)
  if not config then
    return nil, err
  end
  return { frontend = frontend, backend = backend, node_selector = config.node_selector,
    enable_out_cluster = config.enable_out_cluster }
end

return M
