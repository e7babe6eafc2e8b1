-- What a valid policy spec is (API.md "PortInfo", "LocalRedirectPolicy",
-- "BalancingPolicy", "Both policies": an invalid spec is reported with the
-- field), and the CRDs in deploy/crds holding the same rules.
local cjson = require("cjson")
local lyaml = require("lyaml")
local policy_spec = require("balancing.policy_spec")
local fx = require("fixtures.policies.builders")

local port = fx.port

local LR_SELECTOR = { matchLabels = { app = "dns" } }

-- The reason parse() gives for a policy, or nil when it accepts it.
local function reason(kind, obj)
  local spec, err = policy_spec.parse(kind, obj)
  if spec then
    return nil
  end
  return err
end

local function lr_reason(opts)
  return reason("LocalRedirectPolicy", fx.dns_redirect(opts))
end

local function bl_reason(opts)
  return reason("BalancingPolicy", fx.web_balancing(opts))
end

local function lr_spec(opts)
  return assert(policy_spec.parse("LocalRedirectPolicy", fx.dns_redirect(opts)))
end

describe("policy_spec", function()
  describe("PortInfo", function()
    it("takes a port as a decimal string from \"1\" to \"65535\"", function()
      assert.is_nil(lr_reason{ ports = { port("1", "UDP") } })
      assert.equals(65535, lr_spec{ ports = { port("65535", "UDP") } }.backend.ports[1].port)
    end)

    it("refuses a port out of range", function()
      assert.equals('spec.backend.toPorts[0].port: "0" is not a port (a decimal string "1".."65535")',
        lr_reason{ ports = { port("0", "UDP") } })
      assert.equals('spec.backend.toPorts[0].port: "65536" is not a port (a decimal string "1".."65535")',
        lr_reason{ ports = { port("65536", "UDP") } })
    end)

    it("refuses a port that is not a decimal string", function()
      assert.equals('spec.frontend.addressMatcher.toPorts[0].port: 53 is not a port (a decimal string "1".."65535")',
        lr_reason{ address = { ip = "169.254.20.10", ports = { port(53, "UDP") } } })
      assert.matches('^spec.backend.toPorts%[0%].port: "dns" is not a port',
        lr_reason{ ports = { port("dns", "UDP") } })
      assert.matches('^spec.backend.toPorts%[0%].port: "%-1" is not a port',
        lr_reason{ ports = { port("-1", "UDP") } })
    end)

    it("refuses a protocol other than TCP or UDP", function()
      assert.equals('spec.backend.toPorts[0].protocol: "SCTP" is not TCP or UDP',
        lr_reason{ ports = { port("1053", "SCTP") } })
      assert.equals('spec.backend.toPorts[0].protocol: "udp" is not TCP or UDP',
        lr_reason{ ports = { port("1053", "udp") } })
    end)

    it("takes TCP when the protocol is missing, as a Service port does", function()
      local spec = lr_spec{ address = { ip = "169.254.20.10", ports = { { port = "53" } } } }
      assert.same({ port = 53, protocol = "TCP", path = "spec.frontend.addressMatcher.toPorts[0]" },
        spec.frontend.ports[1])
    end)

    it("needs a name on every port when more than one port is listed", function()
      assert.equals("spec.backend.toPorts[1].name: required when more than one port is listed",
        lr_reason{ ports = { port("1053", "UDP", "dns"), port("1054", "TCP") } })
    end)

    it("refuses one name used twice in a list", function()
      assert.equals('spec.backend.toPorts[1].name: "dns" is used by spec.backend.toPorts[0] too',
        lr_reason{ ports = { port("1053", "UDP", "dns"), port("1054", "TCP", "dns") } })
    end)

    it("refuses a name longer than 63 characters, as the CRD does", function()
      local long = string.rep("a", 64)
      assert.is_nil(lr_reason{ ports = { port("1053", "UDP", long:sub(2)) } })
      assert.equals(string.format('spec.backend.toPorts[0].name: "%s" is longer than 63 characters', long),
        lr_reason{ ports = { port("1053", "UDP", long) } })
    end)

    it("reads an empty name as no name", function()
      assert.is_nil(lr_spec{ ports = { port("1053", "UDP", "") } }.backend.ports[1].name)
    end)
  end)

  describe("an invalid spec is refused, naming the field", function()
    it("for an addressMatcher ip that is not IPv4", function()
      assert.equals('spec.frontend.addressMatcher.ip: "10.0.0.300" is not an IPv4 address',
        lr_reason{ address = { ip = "10.0.0.300", ports = { port("53", "UDP") } } })
      assert.equals('spec.frontend.addressMatcher.ip: "fd00::1" is not an IPv4 address',
        lr_reason{ address = { ip = "fd00::1", ports = { port("53", "UDP") } } })
    end)

    it("for a policy address with leading zeros: policy addresses stay strict, unlike a Service's", function()
      assert.equals('spec.frontend.addressMatcher.ip: "169.254.20.010" is not an IPv4 address',
        lr_reason{ address = { ip = "169.254.20.010", ports = { port("53", "UDP") } } })
      assert.equals('spec.backend.addressEndpoint.addresses[0]: "10.1.1.01" is not an IPv4 address',
        bl_reason{ addresses = { "10.1.1.01" } })
    end)

    it("for the address 0.0.0.0 (the NodePort wildcard)", function()
      assert.equals('spec.frontend.addressMatcher.ip: "0.0.0.0" is not a usable address',
        lr_reason{ address = { ip = "0.0.0.0", ports = { port("53", "UDP") } } })
      assert.equals('spec.backend.addressEndpoint.addresses[0]: "0.0.0.0" is not a usable address',
        bl_reason{ addresses = { "0.0.0.0" } })
    end)

    it("with both matchers", function()
      local obj = fx.dns_redirect{ frontend = {
        serviceMatcher = { namespace = "kube-system", serviceName = "kube-dns" },
        addressMatcher = { ip = "169.254.20.10", toPorts = { port("53", "UDP") } } } }
      assert.equals("spec.frontend: exactly one of serviceMatcher and addressMatcher, not both",
        reason("LocalRedirectPolicy", obj))
    end)

    it("with neither matcher", function()
      assert.equals("spec.frontend: exactly one of serviceMatcher and addressMatcher is required",
        lr_reason{ frontend = {} })
      assert.equals("spec.frontend: required", lr_reason{ frontend = cjson.null })
    end)

    it("for a spec that is missing or not an object", function()
      local obj = fx.dns_redirect()
      obj.spec = nil
      assert.equals("spec: required", reason("LocalRedirectPolicy", obj))
      obj.spec = "yes"
      assert.equals("spec: must be an object", reason("LocalRedirectPolicy", obj))
    end)

    it("for a serviceMatcher without serviceName", function()
      assert.equals("spec.frontend.serviceMatcher.serviceName: required (a string)",
        lr_reason{ frontend = { serviceMatcher = { namespace = "kube-system" } } })
    end)

    it("for an addressMatcher without ports", function()
      assert.equals("spec.frontend.addressMatcher.toPorts: at least one port is required",
        lr_reason{ address = { ip = "169.254.20.10", ports = {} } })
    end)

    it("for a LocalRedirect backend without endpointSelector or toPorts", function()
      assert.equals("spec.backend.endpointSelector: required",
        lr_reason{ backend = { toPorts = { port("1053", "UDP") } } })
      assert.equals("spec.backend.toPorts: at least one port is required",
        lr_reason{ backend = { endpointSelector = LR_SELECTOR } })
    end)

    it("for an endpointSelector that does not parse", function()
      assert.equals('spec.backend.endpointSelector.matchExpressions[0].operator: unknown operator "Near"'
        .. " (In, NotIn, Exists, DoesNotExist)",
        lr_reason{ selector = { matchExpressions = { { key = "app", operator = "Near" } } } })
    end)

    it("naming list positions inside a selector from 0, as every other field path", function()
      assert.equals('spec.backend.endpointSelector.matchExpressions[1].values[0]: must be a string, not "7"',
        lr_reason{ selector = { matchExpressions = {
          { key = "app", operator = "Exists" },
          { key = "tier", operator = "In", values = { 7 } },
        } } })
    end)

    it("for a BalancingPolicy with both backend kinds or neither", function()
      assert.equals("spec.backend: exactly one of serviceEndpoint and addressEndpoint, not both",
        bl_reason{ backend = {
          serviceEndpoint = { endpointSelector = {}, toPorts = { port("8080", "TCP") } },
          addressEndpoint = { addresses = { "10.1.1.1" }, toPorts = { port("8080", "TCP") } } } })
      assert.equals("spec.backend: exactly one of serviceEndpoint and addressEndpoint is required",
        bl_reason{ backend = {} })
    end)

    it("for an unknown redirectMode", function()
      assert.equals('spec.backend.serviceEndpoint.redirectMode: "nodePort" is not podEndpoint, hostPort or nodeProxy',
        bl_reason{ mode = "nodePort" })
    end)

    it("for an empty redirectMode (only a missing one means podEndpoint, as the CRD's default)", function()
      assert.equals('spec.backend.serviceEndpoint.redirectMode: "" is not podEndpoint, hostPort or nodeProxy',
        bl_reason{ mode = "" })
      assert.equals("podEndpoint", assert(policy_spec.parse("BalancingPolicy", fx.web_balancing())).backend.mode)
    end)

    it("for an addressEndpoint address that is not IPv4, or no address", function()
      assert.equals('spec.backend.addressEndpoint.addresses[1]: "10.1.1" is not an IPv4 address',
        bl_reason{ addresses = { "10.1.1.1", "10.1.1" } })
      assert.equals("spec.backend.addressEndpoint.addresses: at least one address is required",
        bl_reason{ addresses = {} })
    end)

    it("for an addressMatcher with more than one port on either side and a port without a name", function()
      assert.equals("spec.frontend.addressMatcher.toPorts[0].name: required when more than one port is mapped",
        lr_reason{ ports = { port("2053", "UDP", "dns"), port("2054", "TCP", "dns-tcp") } })
      assert.equals("spec.backend.toPorts[0].name: required when more than one port is mapped",
        lr_reason{ address = { ip = "169.254.20.10",
          ports = { port("53", "UDP", "dns"), port("53", "TCP", "dns-tcp") } } })
    end)

    it("for a nodeLabelSelector that does not parse", function()
      assert.equals("spec.config.nodeLabelSelector.matchExpressions[0].values: required (non-empty) for operator In",
        lr_reason{ node_selector = { matchExpressions = { { key = "zone", operator = "In" } } } })
    end)

    it("for an enableOutCluster that is not a boolean", function()
      assert.equals('spec.config.enableOutCluster: "no" is not true or false', bl_reason{ out_cluster = "no" })
    end)
  end)

  describe("a checked spec", function()
    it("gives a serviceMatcher's Service and toPorts, and the backend's selector and ports", function()
      local spec = lr_spec{ service = { namespace = "kube-system", name = "kube-dns",
        ports = { port("53", "UDP") } } }
      assert.same({ mode = "service", namespace = "kube-system", service_name = "kube-dns",
        ports = { { port = 53, protocol = "UDP", path = "spec.frontend.serviceMatcher.toPorts[0]" } } },
        spec.frontend)
      assert.is_true(spec.backend.selector:matches({ app = "dns" }))
      assert.same({ { port = 1053, protocol = "UDP", path = "spec.backend.toPorts[0]" } }, spec.backend.ports)
    end)

    it("applies out of the cluster unless enableOutCluster is false (a BalancingPolicy only)", function()
      assert.is_true(lr_spec().enable_out_cluster)
      assert.is_false(assert(policy_spec.parse("BalancingPolicy", fx.web_balancing{ out_cluster = false }))
        .enable_out_cluster)
    end)
  end)
end)

-- The CRDs hold the same rules as schema and CEL. What the schema states as
-- data (enums, defaults, bounds, required fields) is compared with the
-- tables policy_spec checks against, so that one cannot change alone.
describe("the CRDs in deploy/crds", function()
  local function load(file)
    local handle = assert(io.open("deploy/crds/" .. file))
    local text = handle:read("*a")
    handle:close()
    return lyaml.load(text).spec.versions[1].schema.openAPIV3Schema.properties.spec
  end
  local crds = {
    LocalRedirectPolicy = load("localredirectpolicies.yaml"),
    BalancingPolicy = load("balancingpolicies.yaml"),
  }

  -- Every PortInfo list schema of a CRD, by the field path of the list.
  local function port_lists(kind)
    local spec = crds[kind].properties
    local lists = {
      ["spec.frontend.serviceMatcher.toPorts"] = spec.frontend.properties.serviceMatcher.properties.toPorts,
      ["spec.frontend.addressMatcher.toPorts"] = spec.frontend.properties.addressMatcher.properties.toPorts,
    }
    if kind == "LocalRedirectPolicy" then
      lists["spec.backend.toPorts"] = spec.backend.properties.toPorts
    else
      lists["spec.backend.serviceEndpoint.toPorts"] = spec.backend.properties.serviceEndpoint.properties.toPorts
      lists["spec.backend.addressEndpoint.toPorts"] = spec.backend.properties.addressEndpoint.properties.toPorts
    end
    return lists
  end

  local function set(list)
    local out = {}
    for _, value in ipairs(list) do
      out[value] = true
    end
    return out
  end

  for _, kind in ipairs({ "LocalRedirectPolicy", "BalancingPolicy" }) do
    describe(kind, function()
      it("takes a PortInfo protocol of TCP or UDP, TCP when it is missing", function()
        for path, list in pairs(port_lists(kind)) do
          local protocol = list.items.properties.protocol
          assert.same(policy_spec.PROTOCOLS, set(protocol.enum), path)
          assert.equals(policy_spec.DEFAULT_PROTOCOL, protocol.default, path)
          assert.same({ "port" }, list.items.required, path)
        end
      end)

      it("bounds a PortInfo name as policy_spec does, and keeps names unique in a list", function()
        for path, list in pairs(port_lists(kind)) do
          assert.equals(policy_spec.MAX_PORT_NAME_LENGTH, list.items.properties.name.maxLength, path)
          -- a list-map key must be required or defaulted: "" is no name
          assert.equals("", list.items.properties.name.default, path)
          assert.equals("map", list["x-kubernetes-list-type"], path)
          assert.same({ "name" }, list["x-kubernetes-list-map-keys"], path)
        end
      end)
    end)
  end

  it("takes the redirectModes policy_spec takes, podEndpoint when it is missing", function()
    local mode = crds.BalancingPolicy.properties.backend.properties.serviceEndpoint.properties.redirectMode
    assert.same(policy_spec.REDIRECT_MODES, set(mode.enum))
    assert.equals(policy_spec.DEFAULT_REDIRECT_MODE, mode.default)
  end)
end)
