-- The rules both policies share once the store has checked a spec (API.md
-- "PortInfo" port mapping, "LocalRedirectPolicy" frontends, "Both
-- policies"): frontends, usable pods, where a policy applies, IDs, same-kind
-- conflicts, and what desired returns. (What a valid spec is:
-- policy_spec_spec.lua.)
local cjson = require("cjson")
local policy = require("balancing.reconcile.policy")
local policy_spec = require("balancing.policy_spec")
local localredirect = require("balancing.reconcile.localredirect")
local balancing = require("balancing.reconcile.balancing")
local node = require("balancing.reconcile.node")
local service = require("balancing.reconcile.service")
local ids = require("balancing.ids")
local fx = require("fixtures.policies.builders")
local world = require("fixtures.policies.world")

local port = fx.port
local lr, bl = fx.dns_redirect, fx.web_balancing

-- The frontends a policy resolves to in a store of objects, as
-- "address:port/PROTO -> backend port" texts.
local function mapping(obj, objects)
  local list = {}
  for i, o in ipairs(objects or {}) do
    list[i] = o
  end
  list[#list + 1] = obj
  local store = world.store(list)
  local name = obj.metadata.name
  local spec = assert(store:policy_spec(obj.kind, name))
  local out = {}
  for i, fe in ipairs(policy.frontends(store, obj.kind, name, spec)) do
    out[i] = fe.key .. " -> " .. fe.backend_port
  end
  return out
end

-- What a registry holds, as plain data: each policy's ID, provisional ID or
-- invalid annotation, the claims on each annotated ID, each Service's ID.
local function registry_snapshot(registry)
  local out = { policies = {}, claims = {}, provisional = {}, services = {} }
  for key, record in pairs(registry.policies) do
    out.policies[key] = { id = record.id, provisional = record.provisional, invalid = record.invalid }
  end
  for id, claimants in pairs(registry.claims) do
    out.claims[id] = {}
    for key in pairs(claimants) do
      out.claims[id][key] = true
    end
  end
  for id, record in pairs(registry.provisional_by_id) do
    out.provisional[id] = record.key
  end
  for key, id in pairs(registry.services) do
    out.services[key] = id
  end
  return out
end

local function checked(kind, obj)
  return assert(policy_spec.parse(kind, obj))
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
  describe("port mapping", function()
    it("maps up to the highest port", function()
      assert.same({ "169.254.20.10:53/UDP -> 65535" }, mapping(lr{ ports = { port("65535", "UDP") } }))
    end)

    it("takes a PortInfo without protocol as TCP, as a Service port does", function()
      local obj = lr{ address = { ip = "169.254.20.10", ports = { { port = "53" } } } }
      assert.same({ "169.254.20.10:53/TCP -> 1053" }, mapping(obj))
    end)

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

    it("is the Service's ClusterIPs as the store reads them (leading zeros decimal, as kube-proxy does)", function()
      local sloppy = fx.service{ namespace = "kube-system", name = "kube-dns", cluster_ip = "10.96.0.010",
        ports = { { name = "dns", port = 53, protocol = "UDP" } } }
      assert.same({ "10.96.0.10:53/UDP -> 1053" }, mapping(service_lr(nil, { port("1053", "UDP") }), { sloppy }))
    end)

    it("follows the Service: it changes when the Service's ClusterIP does", function()
      local store = world.store({ dns_service, service_lr(nil, { port("1053", "UDP", "dns") }) })
      assert(store:upsert(fx.service{ namespace = "kube-system", name = "kube-dns", cluster_ip = "10.96.0.20",
        ports = { { name = "dns", port = 53, protocol = "UDP" } } }))
      local frontends = policy.frontends(store, "LocalRedirectPolicy", "lr",
        assert(store:policy_spec("LocalRedirectPolicy", "lr")))
      assert.equals("10.96.0.20:53/UDP", frontends[1].key)
      assert.equals(1, #frontends)
    end)

    it("has no frontend for a headless Service", function()
      local headless = fx.service{ namespace = "kube-system", name = "kube-dns", cluster_ip = "None",
        ports = { { name = "dns", port = 53, protocol = "UDP" } } }
      assert.same({}, mapping(service_lr(nil, { port("1053", "UDP") }), { headless }))
    end)
  end)

  describe("an invalid spec", function()
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
      assert.is_true(policy.applies("LocalRedirectPolicy", checked("LocalRedirectPolicy", lr()), edge))
    end)

    it("is only the nodes whose labels its nodeLabelSelector matches", function()
      local yes = checked("LocalRedirectPolicy", lr{ node_selector = { matchLabels = { role = "edge" } } })
      local no = checked("LocalRedirectPolicy", lr{ node_selector = { matchLabels = { role = "core" } } })
      assert.is_true(policy.applies("LocalRedirectPolicy", yes, edge))
      assert.is_false(policy.applies("LocalRedirectPolicy", no, edge))
    end)

    it("is never outside the cluster for a LocalRedirectPolicy", function()
      local outside = { node_name = "host", out_cluster = true, labels = {}, addresses = {} }
      assert.is_false(policy.applies("LocalRedirectPolicy", checked("LocalRedirectPolicy", lr()), outside))
    end)

    it("is outside the cluster too for a BalancingPolicy unless enableOutCluster is false", function()
      local outside = { node_name = "host", out_cluster = true, labels = {}, addresses = {} }
      assert.is_true(policy.applies("BalancingPolicy", checked("BalancingPolicy", bl()), outside))
      assert.is_false(policy.applies("BalancingPolicy",
        checked("BalancingPolicy", bl{ out_cluster = false }), outside))
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

    it("are settled when the policy enters the store: reconciling every owner leaves the registry as it was", function()
      -- two policies whose provisional IDs collide, one taken by an
      -- annotation, one annotation used twice, one invalid
      local real = ids.hash
      ids.hash = function() return 41 end
      local ok, err = pcall(function()
        local store = world.store(objects{
          lr{ name = "provisional-a", id = false, address = { ip = "169.254.20.11", ports = { port("53", "UDP") } } },
          bl{ name = "provisional-b", id = false },
          lr{ name = "takes-42", id = "42", created = "2024-01-01T00:00:00Z",
            address = { ip = "169.254.20.12", ports = { port("53", "UDP") } } },
          bl{ name = "also-42", id = "42", created = "2024-02-01T00:00:00Z",
            address = { ip = "10.200.0.2", ports = { port("80", "TCP") } } },
          lr{ name = "bad-id", id = "zero", address = { ip = "169.254.20.13", ports = { port("53", "UDP") } } },
        })
        local before = registry_snapshot(store.ids)
        local ctx = world.ctx(store)
        node.desired(store, ctx)
        for _, svc in ipairs(store:list("Service")) do
          service.desired(store, ctx, svc.metadata.namespace, svc.metadata.name)
        end
        for _, p in ipairs(store:list("LocalRedirectPolicy")) do
          localredirect.desired(store, ctx, p.metadata.name)
        end
        for _, p in ipairs(store:list("BalancingPolicy")) do
          balancing.desired(store, ctx, p.metadata.name)
        end
        assert.same(before, registry_snapshot(store.ids))
        -- provisional-a had 42 until takes-42's annotation took it
        assert.same({ 44, true }, { store:policy_id("LocalRedirectPolicy", "provisional-a") })
        assert.same({ 43, true }, { store:policy_id("BalancingPolicy", "provisional-b") })
      end)
      ids.hash = real
      assert(ok, err)
    end)

    it("refuse an invalid annotation: not programmed, reported", function()
      local frontends, rejections = world.run(localredirect, objects{ lr{ id = "zero" } }, "lr")
      assert.same({}, frontends)
      assert.equals(1, #rejections)
      assert.matches("balancing.elf.io/serviceId", rejections[1].reason)
    end)
  end)

  describe("desired", function()
    local objects = {
      fx.node{ name = "node-1", internal_ip = "192.168.0.1" },
      fx.pod{ name = "dns-1", node = "node-1", ip = "10.244.1.5", labels = { app = "dns" } },
      lr(), bl(), lr{ name = "broken", address = { ip = "10.0.0.300", ports = { port("53", "UDP") } } },
    }

    local function pack(...)
      return { n = select("#", ...), ... }
    end

    it("returns entries, rejections and notices (none when it programs or is rejected): never logs", function()
      local store = world.store(objects)
      local ctx = world.ctx(store)
      for _, call in ipairs({
        { localredirect, "lr" }, { balancing, "bl" }, { localredirect, "broken" }, { localredirect, "gone" },
      }) do
        local results = pack(call[1].desired(store, ctx, call[2]))
        assert.equals(3, results.n, call[2])
        assert.same({}, results[3], call[2])
      end
    end)

    it("is made by modules that never load balancing.log", function()
      local modules = { "balancing.reconcile.policy", "balancing.reconcile.localredirect",
        "balancing.reconcile.balancing" }
      local saved, saved_log = {}, package.loaded["balancing.log"]
      for _, name in ipairs(modules) do
        saved[name], package.loaded[name] = package.loaded[name], nil
      end
      package.loaded["balancing.log"] = nil
      package.preload["balancing.log"] = function()
        error("a policy reconcile module loaded balancing.log")
      end
      local ok, err = pcall(function()
        for _, name in ipairs(modules) do
          require(name)
        end
      end)
      package.preload["balancing.log"] = nil
      package.loaded["balancing.log"] = saved_log
      for _, name in ipairs(modules) do
        package.loaded[name] = saved[name]
      end
      assert(ok, err)
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
