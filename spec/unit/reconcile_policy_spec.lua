-- The rules both policies share (API.md "PortInfo", "LocalRedirectPolicy"
-- frontends, "Both policies"): spec checks, port mapping, frontends, usable
-- pods, where a policy applies, IDs, and same-kind conflicts.
local cjson = require("cjson")
local policy = require("balancing.reconcile.policy")
local localredirect = require("balancing.reconcile.localredirect")
local balancing = require("balancing.reconcile.balancing")
local fx = require("fixtures.policies.builders")
local world = require("fixtures.policies.world")

local port = fx.port

local LR_SELECTOR = { matchLabels = { app = "dns" } }

-- A LocalRedirectPolicy for 169.254.20.10:53/UDP → port 1053 of app=dns pods,
-- with opts overriding any builder option.
local function lr(opts)
  local o = { name = "lr", id = "10",
    address = { ip = "169.254.20.10", ports = { port("53", "UDP") } },
    selector = LR_SELECTOR, ports = { port("1053", "UDP") } }
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  if o.service then
    o.address = nil
  end
  if o.id == false then
    o.id = nil
  end
  return fx.local_redirect(o)
end

local function bl(opts)
  local o = { name = "bl", id = "20",
    address = { ip = "10.200.0.1", ports = { port("80", "TCP") } },
    selector = { matchLabels = { app = "web" } }, ports = { port("8080", "TCP") } }
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  if o.service then
    o.address = nil
  end
  return fx.balancing(o)
end

-- The reason parse() gives for a policy, or nil when it accepts it.
local function reason(kind, obj)
  local spec, err = policy.parse(kind, obj)
  if spec then
    return nil
  end
  return err
end

local function lr_reason(opts)
  return reason("LocalRedirectPolicy", lr(opts))
end

local function bl_reason(opts)
  return reason("BalancingPolicy", bl(opts))
end

-- The frontends a LocalRedirectPolicy resolves to in a store of objects, as
-- "address:port/PROTO -> backend port" texts.
local function mapping(obj, objects)
  local list = {}
  for i, o in ipairs(objects or {}) do
    list[i] = o
  end
  local store = world.store(list)
  local spec = assert(policy.parse(obj.kind, obj))
  local out = {}
  for i, fe in ipairs(policy.frontends(store, spec)) do
    out[i] = fe.key .. " -> " .. fe.backend_port
  end
  return out
end

local dns_service = fx.service{ namespace = "kube-system", name = "kube-dns",
  cluster_ips = { "10.96.0.10", "fd00::10" },
  ports = {
    { name = "dns", port = 53, protocol = "UDP" },
    { name = "dns-tcp", port = 53, protocol = "TCP" },
    { name = "metrics", port = 9153, protocol = "TCP" },
    { name = "sctp", port = 9999, protocol = "SCTP" },
  } }

local function service_lr(matcher_ports, backend_ports)
  return lr{ service = { namespace = "kube-system", name = "kube-dns", ports = matcher_ports },
    ports = backend_ports }
end

describe("policy rules", function()
  describe("PortInfo", function()
    it("takes a port as a decimal string from \"1\" to \"65535\"", function()
      assert.is_nil(lr_reason{ ports = { port("1", "UDP") } })
      assert.is_nil(lr_reason{ ports = { port("65535", "UDP") } })
      assert.same({ "169.254.20.10:53/UDP -> 65535" }, mapping(lr{ ports = { port("65535", "UDP") } }))
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
      local obj = lr{ address = { ip = "169.254.20.10", ports = { { port = "53" } } } }
      assert.same({ "169.254.20.10:53/TCP -> 1053" }, mapping(obj))
    end)

    it("needs a name on every port when more than one port is listed", function()
      assert.equals("spec.backend.toPorts[1].name: required when more than one port is listed",
        lr_reason{ ports = { port("1053", "UDP", "dns"), port("1054", "TCP") } })
    end)

    it("refuses one name used twice in a list", function()
      assert.equals('spec.backend.toPorts[1].name: "dns" is used by spec.backend.toPorts[0] too',
        lr_reason{ ports = { port("1053", "UDP", "dns"), port("1054", "TCP", "dns") } })
    end)
  end)

  describe("port mapping", function()
    it("maps one frontend port to one backend port, whatever their names", function()
      local obj = lr{ address = { ip = "169.254.20.10", ports = { port("53", "UDP", "a") } },
        ports = { port("1053", "UDP", "b") } }
      assert.same({ "169.254.20.10:53/UDP -> 1053" }, mapping(obj))
    end)

    it("maps each frontend port to the backend port of the same name", function()
      local obj = lr{ address = { ip = "169.254.20.10",
          ports = { port("53", "UDP", "dns"), port("53", "TCP", "dns-tcp") } },
        ports = { port("2054", "TCP", "dns-tcp"), port("2053", "UDP", "dns") } }
      assert.same({ "169.254.20.10:53/TCP -> 2054", "169.254.20.10:53/UDP -> 2053" }, mapping(obj))
    end)

    it("does not program a frontend port that no backend port has the name of", function()
      local obj = lr{ address = { ip = "169.254.20.10",
          ports = { port("53", "UDP", "dns"), port("9153", "TCP", "metrics") } },
        ports = { port("2053", "UDP", "dns") } }
      assert.same({ "169.254.20.10:53/UDP -> 2053" }, mapping(obj))
    end)

    it("needs names on both sides of an addressMatcher when either side has more than one port", function()
      assert.equals("spec.frontend.addressMatcher.toPorts[0].name: required when more than one port is mapped",
        lr_reason{ ports = { port("2053", "UDP", "dns"), port("2054", "TCP", "dns-tcp") } })
      assert.equals("spec.backend.toPorts[0].name: required when more than one port is mapped",
        lr_reason{ address = { ip = "169.254.20.10",
          ports = { port("53", "UDP", "dns"), port("53", "TCP", "dns-tcp") } } })
    end)
  end)

  describe("serviceMatcher frontend", function()
    it("is every IPv4 ClusterIP of the Service with each TCP and UDP port when toPorts is empty", function()
      local obj = service_lr(nil, { port("1053", "UDP", "dns"), port("1054", "TCP", "dns-tcp"),
        port("1055", "TCP", "metrics") })
      assert.same({ "10.96.0.10:53/TCP -> 1054", "10.96.0.10:53/UDP -> 1053", "10.96.0.10:9153/TCP -> 1055" },
        mapping(obj, { dns_service }))
    end)

    it("is only the Service ports toPorts lists, matched by number and protocol", function()
      local obj = service_lr({ port("53", "UDP") }, { port("1053", "UDP") })
      assert.same({ "10.96.0.10:53/UDP -> 1053" }, mapping(obj, { dns_service }))
    end)

    it("matches a toPorts name against the Service port's name", function()
      local obj = service_lr({ port("53", "UDP", "not-dns") }, { port("1053", "UDP") })
      assert.same({}, mapping(obj, { dns_service }))
    end)

    it("maps by the Service port's name", function()
      local obj = service_lr({ port("53", "UDP"), }, { port("1053", "UDP", "dns"), port("1054", "TCP", "dns-tcp") })
      assert.same({ "10.96.0.10:53/UDP -> 1053" }, mapping(obj, { dns_service }))
    end)

    it("has no frontend while the Service does not exist, and that is no error", function()
      local obj = service_lr(nil, { port("1053", "UDP") })
      assert.same({}, mapping(obj, {}))
    end)

    it("has no frontend for a headless Service", function()
      local headless = fx.service{ namespace = "kube-system", name = "kube-dns", cluster_ip = "None",
        ports = { { name = "dns", port = 53, protocol = "UDP" } } }
      assert.same({}, mapping(service_lr(nil, { port("1053", "UDP") }), { headless }))
    end)
  end)

  describe("an invalid spec", function()
    it("is refused for an addressMatcher ip that is not IPv4, naming the field", function()
      assert.equals('spec.frontend.addressMatcher.ip: "10.0.0.300" is not an IPv4 address',
        lr_reason{ address = { ip = "10.0.0.300", ports = { port("53", "UDP") } } })
      assert.equals('spec.frontend.addressMatcher.ip: "fd00::1" is not an IPv4 address',
        lr_reason{ address = { ip = "fd00::1", ports = { port("53", "UDP") } } })
    end)

    it("is refused for the address 0.0.0.0 (the NodePort wildcard)", function()
      assert.equals('spec.frontend.addressMatcher.ip: "0.0.0.0" is not a usable address',
        lr_reason{ address = { ip = "0.0.0.0", ports = { port("53", "UDP") } } })
    end)

    it("is refused with both matchers", function()
      local obj = lr{ frontend = {
        serviceMatcher = { namespace = "kube-system", serviceName = "kube-dns" },
        addressMatcher = { ip = "169.254.20.10", toPorts = { port("53", "UDP") } } } }
      assert.equals("spec.frontend: exactly one of serviceMatcher and addressMatcher, not both",
        reason("LocalRedirectPolicy", obj))
    end)

    it("is refused with neither matcher", function()
      assert.equals("spec.frontend: exactly one of serviceMatcher and addressMatcher is required",
        reason("LocalRedirectPolicy", lr{ frontend = {} }))
      assert.equals("spec.frontend: required", reason("LocalRedirectPolicy", lr{ frontend = cjson.null }))
    end)

    it("is refused for a serviceMatcher without serviceName", function()
      local obj = lr{ frontend = { serviceMatcher = { namespace = "kube-system" } } }
      assert.equals("spec.frontend.serviceMatcher.serviceName: required (a string)",
        reason("LocalRedirectPolicy", obj))
    end)

    it("is refused for an addressMatcher without ports", function()
      assert.equals("spec.frontend.addressMatcher.toPorts: at least one port is required",
        lr_reason{ address = { ip = "169.254.20.10", ports = {} } })
    end)

    it("is refused for a LocalRedirect backend without endpointSelector or toPorts", function()
      assert.equals("spec.backend.endpointSelector: required",
        lr_reason{ backend = { toPorts = { port("1053", "UDP") } } })
      assert.equals("spec.backend.toPorts: at least one port is required",
        lr_reason{ backend = { endpointSelector = LR_SELECTOR } })
    end)

    it("is refused for an endpointSelector that does not parse", function()
      assert.equals('spec.backend.endpointSelector.matchExpressions[0].operator: unknown operator "Near"'
        .. " (In, NotIn, Exists, DoesNotExist)",
        lr_reason{ selector = { matchExpressions = { { key = "app", operator = "Near" } } } })
    end)

    it("names list positions inside a selector from 0, as every other field path", function()
      assert.equals('spec.backend.endpointSelector.matchExpressions[1].values[0]: must be a string, not "7"',
        lr_reason{ selector = { matchExpressions = {
          { key = "app", operator = "Exists" },
          { key = "tier", operator = "In", values = { 7 } },
        } } })
    end)

    it("is refused for a BalancingPolicy with both backend kinds or neither", function()
      assert.equals("spec.backend: exactly one of serviceEndpoint and addressEndpoint, not both",
        bl_reason{ backend = {
          serviceEndpoint = { endpointSelector = {}, toPorts = { port("8080", "TCP") } },
          addressEndpoint = { addresses = { "10.1.1.1" }, toPorts = { port("8080", "TCP") } } } })
      assert.equals("spec.backend: exactly one of serviceEndpoint and addressEndpoint is required",
        bl_reason{ backend = {} })
    end)

    it("is refused for an unknown redirectMode", function()
      assert.equals('spec.backend.serviceEndpoint.redirectMode: "nodePort" is not podEndpoint, hostPort or nodeProxy',
        bl_reason{ mode = "nodePort" })
    end)

    it("is refused for an addressEndpoint address that is not IPv4, or no address", function()
      assert.equals('spec.backend.addressEndpoint.addresses[1]: "10.1.1" is not an IPv4 address',
        bl_reason{ addresses = { "10.1.1.1", "10.1.1" } })
      assert.equals("spec.backend.addressEndpoint.addresses: at least one address is required",
        bl_reason{ addresses = {} })
    end)

    it("is refused for a nodeLabelSelector that does not parse", function()
      assert.equals("spec.config.nodeLabelSelector.matchExpressions[0].values: required (non-empty) for operator In",
        lr_reason{ node_selector = { matchExpressions = { { key = "zone", operator = "In" } } } })
    end)

    it("is refused for an enableOutCluster that is not a boolean", function()
      assert.equals('spec.config.enableOutCluster: "no" is not true or false', bl_reason{ out_cluster = "no" })
    end)

    it("is not programmed and is reported once, with the policy name; other policies are untouched", function()
      local objects = {
        fx.node{ name = "node-1", internal_ip = "192.168.0.1" },
        fx.pod{ name = "dns-1", node = "node-1", ip = "10.244.1.5", labels = { app = "dns" } },
        lr{ name = "broken", address = { ip = "10.0.0.300", ports = { port("53", "UDP") } } },
        lr{ name = "fine", id = "11", address = { ip = "169.254.20.11", ports = { port("53", "UDP") } } },
      }
      local frontends, rejections = world.run(localredirect, objects, "broken")
      assert.same({}, frontends)
      assert.same({ { kind = "LocalRedirectPolicy", name = "broken",
        reason = 'spec.frontend.addressMatcher.ip: "10.0.0.300" is not an IPv4 address' } }, rejections)
      local fine, fine_rejections = world.run(localredirect, objects, "fine")
      assert.same({ "169.254.20.11:53/UDP" }, world.keys(fine))
      assert.same({}, fine_rejections)
    end)
  end)

  describe("usable pods", function()
    it("are Running, Ready, with a pod IP, and not being deleted", function()
      assert.is_true(policy.usable_pod(fx.pod{ ip = "10.0.0.1" }))
    end)

    it("exclude pods not Running, not Ready, without IP, or being deleted", function()
      assert.is_false(policy.usable_pod(fx.pod{ ip = "10.0.0.1", phase = "Pending" }))
      assert.is_false(policy.usable_pod(fx.pod{ ip = "10.0.0.1", phase = "Succeeded" }))
      assert.is_false(policy.usable_pod(fx.pod{ ip = "10.0.0.1", ready = false }))
      assert.is_false(policy.usable_pod(fx.pod{}))
      assert.is_false(policy.usable_pod(fx.pod{ ip = "10.0.0.1", deleting = true }))
    end)

    it("read a JSON null deletionTimestamp as absent", function()
      local pod = fx.pod{ ip = "10.0.0.1" }
      pod.metadata.deletionTimestamp = cjson.null
      assert.is_true(policy.usable_pod(pod))
    end)

    it("are reached at their IPv4 pod IP on a dual-stack cluster", function()
      assert.equals("10.0.0.1", policy.pod_ipv4(fx.pod{ ips = { "fd00::1", "10.0.0.1" } }))
    end)
  end)

  describe("where a policy applies", function()
    local edge = { node_name = "node-1", out_cluster = false, labels = { role = "edge" }, addresses = {} }

    it("is every node when it has no nodeLabelSelector", function()
      assert.is_true(policy.applies("LocalRedirectPolicy", assert(policy.parse("LocalRedirectPolicy", lr())), edge))
    end)

    it("is only the nodes whose labels its nodeLabelSelector matches", function()
      local yes = assert(policy.parse("LocalRedirectPolicy", lr{ node_selector = { matchLabels = { role = "edge" } } }))
      local no = assert(policy.parse("LocalRedirectPolicy", lr{ node_selector = { matchLabels = { role = "core" } } }))
      assert.is_true(policy.applies("LocalRedirectPolicy", yes, edge))
      assert.is_false(policy.applies("LocalRedirectPolicy", no, edge))
    end)

    it("is never outside the cluster for a LocalRedirectPolicy", function()
      local outside = { node_name = "host", out_cluster = true, labels = {}, addresses = {} }
      assert.is_false(policy.applies("LocalRedirectPolicy", assert(policy.parse("LocalRedirectPolicy", lr())), outside))
    end)

    it("is outside the cluster too for a BalancingPolicy unless enableOutCluster is false", function()
      local outside = { node_name = "host", out_cluster = true, labels = {}, addresses = {} }
      assert.is_true(policy.applies("BalancingPolicy", assert(policy.parse("BalancingPolicy", bl())), outside))
      assert.is_false(policy.applies("BalancingPolicy",
        assert(policy.parse("BalancingPolicy", bl{ out_cluster = false })), outside))
    end)
  end)

  describe("service IDs", function()
    local function objects(extra)
      local list = {
        fx.node{ name = "node-1", internal_ip = "192.168.0.1" },
        fx.pod{ name = "dns-1", node = "node-1", ip = "10.244.1.5", labels = { app = "dns" } },
      }
      for _, o in ipairs(extra) do
        list[#list + 1] = o
      end
      return list
    end

    it("are the policy's balancing.elf.io/serviceId annotation", function()
      local frontends = world.run(localredirect, objects{ lr{ id = "4242" } }, "lr")
      assert.equals(4242, frontends[1].id)
    end)

    it("are provisional (non-zero, below the Service range) while the annotation is missing", function()
      local frontends, rejections = world.run(localredirect, objects{ lr{ id = false } }, "lr")
      assert.is_true(frontends[1].id >= 1 and frontends[1].id < 0x80000000)
      assert.same({}, rejections)
    end)

    it("refuse an invalid annotation: not programmed, reported", function()
      local frontends, rejections = world.run(localredirect, objects{ lr{ id = "zero" } }, "lr")
      assert.same({}, frontends)
      assert.equals(1, #rejections)
      assert.matches("balancing.elf.io/serviceId", rejections[1].reason)
    end)
  end)

  describe("two policies of the same kind claiming one frontend", function()
    local function dns_objects(extra)
      local list = {
        fx.node{ name = "node-1", internal_ip = "192.168.0.1", labels = { role = "edge" } },
        fx.pod{ name = "dns-1", node = "node-1", ip = "10.244.1.5", labels = { app = "dns" } },
        dns_service,
      }
      for _, o in ipairs(extra) do
        list[#list + 1] = o
      end
      return list
    end

    local older = lr{ name = "node-local-dns", id = "1", created = "2024-01-01T00:00:00Z",
      service = { namespace = "kube-system", name = "kube-dns", ports = { port("53", "UDP") } },
      ports = { port("1053", "UDP") } }

    it("leave the frontend to the older one (creationTimestamp)", function()
      local younger = lr{ name = "aaa-younger", id = "2", created = "2024-02-01T00:00:00Z",
        address = { ip = "10.96.0.10", ports = { port("53", "UDP") } } }
      local objects = dns_objects{ older, younger }
      local frontends, rejections = world.run(localredirect, objects, "node-local-dns")
      assert.same({ "10.96.0.10:53/UDP" }, world.keys(frontends))
      assert.same({}, rejections)
      frontends, rejections = world.run(localredirect, objects, "aaa-younger")
      assert.same({}, frontends)
      assert.same({ { kind = "LocalRedirectPolicy", name = "aaa-younger",
        reason = "frontend 10.96.0.10:53/UDP is claimed by older LocalRedirectPolicy node-local-dns"
          .. " (only this frontend is not programmed)" } }, rejections)
    end)

    it("with the same creationTimestamp, leave it to the one whose name sorts first", function()
      local twin = lr{ name = "zz-twin", id = "3", created = "2024-01-01T00:00:00Z",
        address = { ip = "10.96.0.10", ports = { port("53", "UDP") } } }
      local objects = dns_objects{ older, twin }
      assert.equals(1, #world.run(localredirect, objects, "node-local-dns"))
      local frontends, rejections = world.run(localredirect, objects, "zz-twin")
      assert.same({}, frontends)
      assert.matches("claimed by older LocalRedirectPolicy node%-local%-dns", rejections[1].reason)
    end)

    it("drop only the shared frontends of the younger one, which keeps the others", function()
      local younger = lr{ name = "younger", id = "2", created = "2024-02-01T00:00:00Z",
        address = { ip = "10.96.0.10", ports = { port("53", "UDP", "dns"), port("53", "TCP", "dns-tcp") } },
        ports = { port("2053", "UDP", "dns"), port("2054", "TCP", "dns-tcp") } }
      local frontends, rejections = world.run(localredirect, dns_objects{ older, younger }, "younger")
      assert.same({ "10.96.0.10:53/TCP" }, world.keys(frontends))
      assert.same({ "frontend 10.96.0.10:53/UDP is claimed by older LocalRedirectPolicy node-local-dns"
        .. " (only this frontend is not programmed)" }, world.reasons(rejections))
    end)

    it("do not count an older policy whose spec is invalid", function()
      local broken = lr{ name = "broken", id = "5", created = "2023-01-01T00:00:00Z",
        address = { ip = "10.96.0.10", ports = { port("53", "UDP") } }, ports = { port("99999", "UDP") } }
      local frontends, rejections = world.run(localredirect, dns_objects{ older, broken }, "node-local-dns")
      assert.same({ "10.96.0.10:53/UDP" }, world.keys(frontends))
      assert.same({}, rejections)
    end)

    it("do not count an older policy that does not apply to this node", function()
      local elsewhere = lr{ name = "core-only", id = "5", created = "2023-01-01T00:00:00Z",
        address = { ip = "10.96.0.10", ports = { port("53", "UDP") } },
        node_selector = { matchLabels = { role = "core" } } }
      local frontends, rejections = world.run(localredirect, dns_objects{ older, elsewhere }, "node-local-dns")
      assert.same({ "10.96.0.10:53/UDP" }, world.keys(frontends))
      assert.same({}, rejections)
    end)

    it("among three, leave the frontend to the oldest that programs it, past an older invalid one", function()
      local broken = lr{ name = "broken", id = "5", created = "2023-01-01T00:00:00Z",
        address = { ip = "10.96.0.10", ports = { port("53", "UDP") } }, ports = { port("99999", "UDP") } }
      local youngest = lr{ name = "youngest", id = "2", created = "2024-02-01T00:00:00Z",
        address = { ip = "10.96.0.10", ports = { port("53", "UDP") } } }
      local objects = dns_objects{ broken, older, youngest }
      assert.same({ "10.96.0.10:53/UDP" }, world.keys(world.run(localredirect, objects, "node-local-dns")))
      local frontends, rejections = world.run(localredirect, objects, "youngest")
      assert.same({}, frontends)
      assert.same({ "frontend 10.96.0.10:53/UDP is claimed by older LocalRedirectPolicy node-local-dns"
        .. " (only this frontend is not programmed)" }, world.reasons(rejections))
    end)

    it("leave the frontend to the older one even while it has no backend here (pod churn moves nothing)", function()
      local older_elsewhere = lr{ name = "node-local-dns", id = "1", created = "2024-01-01T00:00:00Z",
        address = { ip = "10.96.0.10", ports = { port("53", "UDP") } },
        selector = { matchLabels = { app = "not-here" } } }
      local younger = lr{ name = "younger", id = "2", created = "2024-02-01T00:00:00Z",
        address = { ip = "10.96.0.10", ports = { port("53", "UDP") } } }
      local frontends, rejections = world.run(localredirect, dns_objects{ older_elsewhere, younger }, "younger")
      assert.same({}, frontends)
      assert.matches("claimed by older LocalRedirectPolicy node%-local%-dns", rejections[1].reason)
    end)

    it("do not conflict when they are of different kinds (the datapath's priority decides)", function()
      local global = bl{ name = "dns-global", id = "30", created = "2023-01-01T00:00:00Z",
        address = { ip = "10.96.0.10", ports = { port("53", "UDP") } },
        selector = { matchLabels = { app = "dns" } }, ports = { port("53", "UDP") } }
      local objects = dns_objects{ older, global }
      local lr_frontends, lr_rejections = world.run(localredirect, objects, "node-local-dns")
      local bl_frontends, bl_rejections = world.run(balancing, objects, "dns-global")
      assert.same({ "10.96.0.10:53/UDP" }, world.keys(lr_frontends))
      assert.same({ "10.96.0.10:53/UDP" }, world.keys(bl_frontends))
      assert.same({}, lr_rejections)
      assert.same({}, bl_rejections)
    end)

    it("apply to BalancingPolicies alike", function()
      local first = bl{ name = "first", id = "31", created = "2024-01-01T00:00:00Z" }
      local second = bl{ name = "second", id = "32", created = "2024-03-01T00:00:00Z" }
      local objects = { fx.node{ name = "node-1", internal_ip = "192.168.0.1" }, first, second }
      assert.same({ "10.200.0.1:80/TCP" }, world.keys(world.run(balancing, objects, "first")))
      local frontends, rejections = world.run(balancing, objects, "second")
      assert.same({}, frontends)
      assert.same({ { kind = "BalancingPolicy", name = "second",
        reason = "frontend 10.200.0.1:80/TCP is claimed by older BalancingPolicy first"
          .. " (only this frontend is not programmed)" } }, rejections)
    end)
  end)
end)
